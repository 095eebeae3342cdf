package incident

import (
	"testing"

	"github.com/vigil-k8s/vigil/ingest"
)

func TestGrants_note(t *testing.T) {
	tests := []struct {
		name, event string
		author      string
	}{
		{"cluster role binding created",
			`{"auditID":"a1","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings","verb":"create","user":{"username":"admin"},"objectRef":{"resource":"clusterrolebindings","name":"x","apiGroup":"rbac.authorization.k8s.io"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-11-22T06:28:11Z"}`,
			"admin"},
		{"role binding patched, no requestURI",
			`{"auditID":"a1","stage":"ResponseComplete","verb":"patch","user":{"username":"ci"},"objectRef":{"resource":"rolebindings","namespace":"n","name":"x"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-11-22T06:28:11Z"}`,
			"ci"},
		{"refused", `{"auditID":"a1","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings","verb":"create","user":{"username":"mallory"},"objectRef":{"resource":"clusterrolebindings"},"responseStatus":{"code":403},"requestReceivedTimestamp":"2026-11-22T06:28:11Z"}`, ""},
		{"read", `{"auditID":"a1","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings","verb":"list","user":{"username":"admin"},"objectRef":{"resource":"clusterrolebindings"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-11-22T06:28:11Z"}`, ""},
		{"other resource", `{"auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/n/secrets/bindings","verb":"create","user":{"username":"admin"},"objectRef":{"resource":"secrets"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-11-22T06:28:11Z"}`, ""},
		{"no user", `{"auditID":"a1","stage":"ResponseComplete","verb":"create","user":{},"objectRef":{"resource":"rolebindings"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-11-22T06:28:11Z"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dec ingest.Decoder
			ev, err := dec.Decode([]byte(tt.event))
			if err != nil {
				t.Fatal(err)
			}
			g := newGrants()
			g.note(ev)
			author, ok := g.author("a1")
			if author != tt.author || ok != (tt.author != "") {
				t.Errorf("Author = %q, %v; want %q", author, ok, tt.author)
			}
		})
	}
}
