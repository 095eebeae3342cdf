package envelope

import (
	"strings"
	"testing"
)

func gkeEntries(t testing.TB) []string {
	t.Helper()
	enc, err := NewEncoder(nil, GKE, EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, run := range []string{"run2", "run5"} {
		for _, e := range recording(t, run) {
			entry, ok, err := enc.GKEEntry(e)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				out = append(out, string(entry))
			}
		}
	}
	return out
}

// TestFastGKE_SameAsParser: the one-pass reader writes what the parser
// path writes, byte for byte, for every real capture and for entries laid
// out otherwise, or leaves the entry to it.
func TestFastGKE_SameAsParser(t *testing.T) {
	real := gkeEntries(t)
	for i, entry := range real {
		fast, slow, took := decodeBothWays(t, []byte(entry), (*Decoder).fastGKE, false)
		if !took {
			t.Fatalf("entry %d: one-pass reader left it: %s", i, entry)
		}
		if strings.Join(fast, "\n") != strings.Join(slow, "\n") {
			t.Fatalf("entry %d:\none pass:\n%s\nparser:\n%s", i, strings.Join(fast, "\n"), strings.Join(slow, "\n"))
		}
	}
	const pp = `"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","methodName":"io.k8s.core.v1.secrets.get","resourceName":"core/v1/namespaces/ns/secrets/s"`
	tests := []struct {
		name, data string
		took       bool
	}{
		{"minimal", `{"insertId":"1",` + pp + `}}`, true},
		{"escapes", `{"insertId":"a\"b",` + pp + `,"status":{"code":7,"message":"no \"x\"\n\u00e9"},"authenticationInfo":{"principalEmail":"u\u0041"}},"labels":{"k":"v\t\u0001"}}`, true},
		{"control byte", `{"insertId":"1",` + pp + `,"requestMetadata":{"callerSuppliedUserAgent":"a` + "\x01" + `b"}}}`, true},
		{"@type first", `{"insertId":"1",` + pp + `,"request":{"@type":"x","a":1}}}`, true},
		{"@type alone", `{"insertId":"1",` + pp + `,"request":{"@type":"x"},"response":{"a":{"@type":1},"@type":"y"}}}`, true},
		{"spaced", `{ "insertId" : "1" , ` + pp + ` , "request" : { "a" : 1 } } }`, true},
		{"code forms", `{"insertId":"1",` + pp + `,"status":{"code":"7"}}}`, true},
		{"float code", `{"insertId":"1",` + pp + `,"status":{"code":1.5e1}}}`, true},
		{"status not an object", `{"insertId":"1",` + pp + `,"status":7}}`, true},
		{"authorization", `{"insertId":"1",` + pp + `,"authorizationInfo":[{"granted":true},{"granted":"true"},3]}}`, true},
		{"authorization granted", `{"insertId":"1",` + pp + `,"authorizationInfo":[{"granted":true}]}}`, true},
		{"decision label", `{"insertId":"1",` + pp + `,"authorizationInfo":[{}]},"labels":{"authorization.k8s.io/decision":"allow","n":1}}`, true},
		{"started", `{"operation":{"id":"op","first":true,"last":false},` + pp + `}}`, true},
		{"non-resource", `{"insertId":"1","protoPayload":{"methodName":"io.k8s.get","resourceName":"/healthz"}}`, true},
		{"other type", `{"insertId":"1","protoPayload":{"@type":"x.y"}}`, true},
		{"other service", `{"insertId":"1","protoPayload":{"serviceName":"compute.googleapis.com"}}`, true},
		{"other method", `{"insertId":"1","protoPayload":{"methodName":"beta.compute.instances.insert"}}`, true},
		{"cluster", `{"insertId":"1",` + pp + `},"resource":{"type":"k8s_cluster","labels":{"cluster_name":"c1"}}}`, true},
		{"no id", `{` + pp + `}}`, false},
		{"repeated field", `{"insertId":"1","insertId":"2",` + pp + `}}`, false},
		{"escaped name", `{"insertId":"1","proto\u0050ayload":{}}`, false},
		{"repeated label", `{"insertId":"1",` + pp + `},"labels":{"k":"a","k":"b"}}`, false},
		{"vigil label", `{"insertId":"1",` + pp + `},"labels":{"vigil.dev/source":"x"}}`, false},
		{"escaped body name", `{"insertId":"1",` + pp + `,"request":{"\u0061":1}}}`, false},
		{"two @type", `{"insertId":"1",` + pp + `,"request":{"@type":"a","@type":"b"}}}`, false},
		{"another envelope", `{"records":[],` + pp + `}}`, false},
		{"trailing bytes", `{"insertId":"1",` + pp + `}} x`, false},
		{"not an entry", `{"kind":"Event","auditID":"a"}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fast, slow, took := decodeBothWays(t, []byte(tc.data), (*Decoder).fastGKE, tc.name == "spaced")
			if took != tc.took {
				t.Fatalf("one-pass reader took the entry: %v, want %v", took, tc.took)
			}
			if took && strings.Join(fast, "\n") != strings.Join(slow, "\n") {
				t.Errorf("one pass:\n%s\nparser:\n%s", strings.Join(fast, "\n"), strings.Join(slow, "\n"))
			}
		})
	}
}

// FuzzFastGKE holds the one-pass reader to the parser path: the same
// events, up to the whitespace the parser drops from bodies.
func FuzzFastGKE(f *testing.F) {
	for _, e := range gkeEntries(f)[:20] {
		f.Add([]byte(e))
	}
	f.Add([]byte(`{"insertId":"1","protoPayload":{"methodName":"io.k8s.get","request":{ "@type" : "x" , "a" : [ 1 ] }},"labels":{"a":"\u0041"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, slow, took := decodeBothWays(t, data, (*Decoder).fastGKE, true)
		if took && strings.Join(fast, "\n") != strings.Join(slow, "\n") {
			t.Errorf("%q\none pass:\n%s\nparser:\n%s", data, strings.Join(fast, "\n"), strings.Join(slow, "\n"))
		}
	})
}
