package detect

import (
	"testing"

	"github.com/vigil-k8s/vigil/ingest"
)

// TestRender_MissingFields pins docs/rules.md: a field that is missing, at
// any depth, renders as an empty string, never as "<no value>" or a
// template error.
func TestRender_MissingFields(t *testing.T) {
	resource := ev("r1", 0, "alice", "create", "pods", 201,
		"annotations", `{"authorization.k8s.io/decision":"allow"}`,
		"requestObject", `{"kind":"Pod","metadata":{"name":"web","labels":null},"spec":{"hostNetwork":true,"volumes":[{"name":"v"}]}}`)
	// A non-resource request: no objectRef, annotations or bodies.
	nonResource := []byte(`{"auditID":"n1","stage":"ResponseComplete","verb":"get","requestURI":"/healthz",` +
		`"user":{"username":"bob"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-11-22T06:00:00Z"}`)
	cases := []struct {
		name, output string
		event        []byte
		want         string
	}{
		{"top-level missing", "[{{ .nope }}]", resource, "[]"},
		{"nested missing under a known map", "[{{ .objectRef.nope }}]", resource, "[]"},
		{"missing at depth", "[{{ .nope.deeper.still }}]", resource, "[]"},
		{"objectRef of a non-resource request", "[{{ .objectRef.name }}|{{ .objectRef.namespace }}]", nonResource, "[|]"},
		{"annotation present", "[{{ index .annotations \"authorization.k8s.io/decision\" }}]", resource, "[allow]"},
		{"annotation missing", "[{{ .annotations.foo }}]", resource, "[]"},
		{"annotations absent", "[{{ .annotations.foo }}]", nonResource, "[]"},
		{"index of a missing annotation", "[{{ index .annotations \"foo\" }}]", nonResource, "[]"},
		{"request body field", "[{{ .requestObject.spec.hostNetwork }}]", resource, "[true]"},
		{"request body field missing", "[{{ .requestObject.spec.x }}]", resource, "[]"},
		{"request body absent", "[{{ .requestObject.spec.x }}]", nonResource, "[]"},
		{"request body absent, printed whole", "[{{ .requestObject }}]", nonResource, "[]"},
		{"under a JSON null", "[{{ .requestObject.metadata.labels.app }}]", resource, "[]"},
		{"a JSON null", "[{{ .requestObject.metadata.labels }}]", resource, "[]"},
		{"variable path", "[{{ $.requestObject.spec.x }}{{ $r := .requestObject }}{{ $r.spec.x }}]", nonResource, "[]"},
		{"with and range over missing", "[{{ with .nope }}x{{ else }}none{{ end }}{{ range .requestObject.spec.nope }}x{{ end }}]", resource, "[none]"},
		{"range over present", "[{{ range .requestObject.spec.volumes }}{{ .name }}{{ .missing }}{{ end }}]", resource, "[v]"},
		{"default of missing", `[{{ default "*" .objectRef.name }}|{{ default "*" .nope.x }}]`, nonResource, "[*|*]"},
		{"join of missing", `[{{ join .nope ", " }}]`, resource, "[]"},
		{"pipeline in parentheses", "[{{ (.requestObject).spec.x }}{{ (.requestObject).spec.hostNetwork }}]", resource, "[true]"},
		{"method without arguments", "[{{ .first.Unix }}{{ .first.nope }}]", resource, "[1795327200]"},
		{"defined template", `{{ define "x" }}[{{ .nope }}{{ .user.username }}]{{ end }}{{ template "x" . }}`, resource, "[alice]"},
		{"piped", `[{{ index .annotations "foo" | printf "%v" }}{{ .requestObject.kind | printf "%s" }}]`, resource, "[Pod]"},
		{"present fields", `{{ .user.username }} {{ .verb }} {{ .objectRef.resource }} {{ .count }} {{ .first.Format "15:04" }}`, resource, "alice create pods 1 06:00"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := compileTestRules(t, `
rules:
- id: any
  title: any event
  severity: low
  audit: {level: RequestResponse}
  match: verb != ""
  output: '`+c.output+`'
`)
			alerts, err := Evaluate(rs, [][]byte{c.event})
			if err != nil {
				t.Fatal(err)
			}
			if len(alerts) != 1 {
				t.Fatalf("got %d alerts, want 1", len(alerts))
			}
			if got := alerts[0].Message; got != c.want {
				t.Errorf("output %s rendered %q, want %q", c.output, got, c.want)
			}
		})
	}
}

// BenchmarkRender measures one alert message of each kind of template the
// built-in packs use: plain fields, and with/range over a response body.
func BenchmarkRender(b *testing.B) {
	rs := compileTestRules(b, `
rules:
- id: exec
  title: exec
  severity: low
  audit: {level: Metadata}
  match: objectRef.subresource == "exec"
  output: '{{ .user.username }} ran "{{ .execCommand }}" in pod {{ .objectRef.namespace }}/{{ .objectRef.name }}'
- id: binding
  title: binding
  severity: low
  audit: {level: RequestResponse}
  match: objectRef.resource == "clusterrolebindings"
  output: >-
    {{ .user.username }} bound {{ with .responseObject }}{{ .roleRef.kind }} {{ .roleRef.name }}
    to {{ range .subjects }}{{ .kind }} {{ with .namespace }}{{ . }}/{{ end }}{{ .name }} {{ end }}{{ end }}({{ .objectRef.resource }}
    {{ with .objectRef.namespace }}{{ . }}/{{ end }}{{ .objectRef.name }}) at {{ .first.Format "15:04:05" }}
`)
	events := map[string][]byte{
		"exec": ev("e1", 0, "alice", "get", "pods", 101, "objectRef", `{"resource":"pods","subresource":"exec","namespace":"team-a","name":"web"}`,
			"requestURI", "/api/v1/namespaces/team-a/pods/web/exec?command=sh&command=-c&command=id"),
		"binding": ev("b1", 0, "alice", "create", "clusterrolebindings", 201, "responseObject",
			`{"roleRef":{"kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"ServiceAccount","namespace":"ns","name":"sa"},{"kind":"User","name":"bob"}]}`),
	}
	var d ingest.Decoder
	for _, id := range []string{"exec", "binding"} {
		b.Run(id, func(b *testing.B) {
			r := rs.Rule(id)
			e, err := d.Decode(events[id])
			if err != nil {
				b.Fatal(err)
			}
			e.LoadObjects()
			a := &Alert{ExecCommand: ExecCommand(e.RequestURI), Count: 1, FirstTime: t0, LastTime: t0}
			b.ReportAllocs()
			for b.Loop() {
				if render(r, e, a) == "" {
					b.Fatal("empty message")
				}
			}
			b.Log(render(r, e, a))
		})
	}
}
