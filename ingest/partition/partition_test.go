package partition

import (
	"strings"
	"testing"
)

func TestKeyer(t *testing.T) {
	for _, tc := range []struct {
		name, path, event, want string
	}{
		{"user", "", `{"user":{"username":"alice","groups":["dev"]}}`, "alice"},
		{"escaped", "", `{"user":{"username":"system:serviceaccount:ns:a\"b"}}`, `system:serviceaccount:ns:a"b`},
		{"other field", "objectRef.namespace", `{"objectRef":{"namespace":"team-a"}}`, "team-a"},
		{"missing", "", `{"verb":"get"}`, ""},
		{"not a string", "", `{"user":{"username":42}}`, ""},
		{"not JSON", "", `{"user":`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := NewKeyer(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(k.Append([]byte("x"), []byte(tc.event))); got != "x"+tc.want {
				t.Errorf("key of %s = %q, want %q", tc.event, got[1:], tc.want)
			}
		})
	}
	if _, err := NewKeyer("user..username"); err == nil || !strings.Contains(err.Error(), "empty field") {
		t.Errorf("NewKeyer of a bad path: %v", err)
	}
}
