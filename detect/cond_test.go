package detect

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/auditgen"
)

// builtinRuleSet compiles the built-in packs from their files (the
// policies package embeds them but imports this one).
func builtinRuleSet(t testing.TB) *RuleSet {
	t.Helper()
	cat, err := LoadPaths([]string{filepath.Join("..", "policies", "builtin")})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// equivalenceCorpora are the events every rule is evaluated on both ways:
// the fixtures of every built-in rule, the real apiserver captures and
// generated events of each profile.
func equivalenceCorpora(t testing.TB, rs *RuleSet, generated int) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	for _, r := range rs.Rules {
		for _, f := range append(slices.Clone(r.Spec.Fixtures.Fire), r.Spec.Fixtures.Quiet...) {
			evs, err := FixtureEvents(f)
			if err != nil {
				t.Fatal(err)
			}
			out["fixtures"] = append(out["fixtures"], evs...)
		}
	}
	for _, run := range []string{"run2", "run5"} {
		f, err := os.Open(filepath.Join("..", "testdata", "real-apiserver", run, "audit.log.gz"))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			out["capture "+run] = append(out["capture "+run], bytes.Clone(sc.Bytes()))
		}
		f.Close()
	}
	if testing.Short() {
		generated /= 5
	}
	for _, p := range auditgen.Profiles {
		out["generated "+p] = auditgen.Events(auditgen.Options{Seed: 11, Profile: p}, generated)
	}
	return out
}

// TestCompiledConditions_MatchTheVM evaluates every condition and key of
// every built-in rule in Go and on the VM, on every event of the corpora,
// and requires the same verdicts and keys.
func TestCompiledConditions_MatchTheVM(t *testing.T) {
	rs := builtinRuleSet(t)
	fast, total := 0, 0
	for _, r := range rs.Rules {
		for _, p := range r.programs() {
			total++
			if p.fast != nil || p.str != nil || p.strs != nil {
				fast++
			}
		}
	}
	t.Logf("%d of %d expressions of the built-in rules have a Go form", fast, total)
	w := &worker{rs: rs, m: newEngineMetrics(metrics.NewSet(), rs), log: slog.New(slog.DiscardHandler),
		dec: ingest.Decoder{Annotations: true, Extra: true}}
	for name, events := range equivalenceCorpora(t, rs, 5000) {
		t.Run(name, func(t *testing.T) {
			checked := 0
			for i, data := range events {
				ev, err := w.dec.Decode(data)
				if err != nil {
					continue
				}
				for _, r := range rs.Rules {
					for _, p := range r.programs() {
						checked++
						// Separate contexts: the VM run must not see
						// what the Go form loaded, nor the reverse.
						w.x.reset(w, ev)
						if p.boolean {
							got := w.x.test(r, p)
							w.x.reset(w, ev)
							want := w.x.testVM(r, p)
							if got != want {
								t.Fatalf("event %d, rule %s, %q: Go form %v, VM %v\n%s", i, r.Spec.ID, p.p.Source().String(), got, want, data)
							}
							continue
						}
						var one [1]string
						got, gok := w.x.values(r, p, &one)
						got = slices.Clone(got)
						w.x.reset(w, ev)
						out, wok := w.x.run(r, p)
						if gok != wok || (wok && !slices.Equal(got, keyStrings(out))) {
							t.Fatalf("event %d, rule %s, %q: Go form %q %v, VM %q %v", i, r.Spec.ID, p.p.Source().String(), got, gok, keyStrings(out), wok)
						}
					}
				}
			}
			if checked == 0 {
				t.Fatal("no event of the corpus decoded")
			}
		})
	}
}

// programs returns every compiled expression of a rule.
func (r *Rule) programs() []*program {
	var out []*program
	add := func(ps ...*program) {
		for _, p := range ps {
			if p != nil {
				out = append(out, p)
			}
		}
	}
	add(r.match, r.distinct)
	add(r.exceptions...)
	add(r.by...)
	for _, st := range r.steps {
		add(st.match)
		add(st.by...)
	}
	if r.suppress != nil {
		add(r.suppress.by...)
	}
	return out
}

// TestGoForms_MatchTheVM compiles any, all and none over lists of
// strings and let in Go, and checks each verdict against the VM's and the
// expected one, including a predicate part only the VM can run.
func TestGoForms_MatchTheVM(t *testing.T) {
	events := map[string][]byte{
		"exec cat": ev("a", 0, "alice", "create", "pods", 200, "requestURI",
			"/api/v1/namespaces/ns/pods/p/exec?command=cat&command=%2Froot%2F.ssh%2Fid_rsa"),
		"exec ls": ev("b", 0, "alice", "create", "pods", 200, "requestURI",
			"/api/v1/namespaces/ns/pods/p/exec?command=ls&command=-l"),
		"no query": ev("c", 0, "alice", "list", "pods", 200, "requestURI", "/api/v1/pods"),
		"selector": ev("d", 0, "alice", "list", "secrets", 200, "requestURI",
			"/api/v1/secrets?labelSelector=owner%3Dhelm%2Cname%3Dx"),
	}
	tests := []struct {
		match string
		want  map[string]bool // by event; absent means false
	}{
		{`any(split(execCommand(requestURI), " "), inList(#, "paths"))`, map[string]bool{"exec cat": true}},
		{`all(split(execCommand(requestURI), " "), # != "ls")`, map[string]bool{"exec cat": true, "no query": true, "selector": true}},
		{`none(split(execCommand(requestURI), " "), # startsWith "-")`, map[string]bool{"exec cat": true, "no query": true, "selector": true}},
		{`any(queryParam(requestURI, "labelSelector"), # contains "owner=helm")`, map[string]bool{"selector": true}},
		{`all(queryParam(requestURI, "labelSelector"), # contains "owner=helm")`, map[string]bool{"exec cat": true, "exec ls": true, "no query": true, "selector": true}},
		// The predicate's second half has no Go form: it runs on the VM
		// without the element.
		{`any(split(execCommand(requestURI), " "), # == "ls" && len(user.groups) > 0)`, map[string]bool{"exec ls": true}},
		// let, of a condition and of a string.
		{`let u = user.username; u startsWith "al" && any(queryParam(requestURI, "command"), # == "ls")`, map[string]bool{"exec ls": true}},
		{`(let c = execCommand(requestURI); c + "!") == "cat /root/.ssh/id_rsa!"`, map[string]bool{"exec cat": true}},
		// A predicate of its own inside: its # is the VM's.
		{`any(split(execCommand(requestURI), " "), any(split(#, "/"), # == ".ssh"))`, map[string]bool{"exec cat": true}},
	}
	for _, tc := range tests {
		rs := compileTestRules(t, `
lists:
  paths: [/root/.ssh/id_rsa]
rules:
- id: q
  title: q
  severity: low
  audit: {level: Metadata}
  match: '`+tc.match+`'
`)
		r := rs.Rules[0]
		if r.match.fast == nil {
			t.Errorf("%s: no Go form", tc.match)
		}
		w := &worker{rs: rs, m: newEngineMetrics(metrics.NewSet(), rs), log: slog.New(slog.DiscardHandler), dec: ingest.Decoder{}}
		for name, data := range events {
			e, err := w.dec.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			w.x.reset(w, e)
			got, ok := r.match.fast(&w.x)
			if !ok {
				t.Errorf("%s on %s: the Go form left it to the VM", tc.match, name)
			}
			w.x.reset(w, e)
			vm := w.x.testVM(r, r.match)
			if got != vm || got != tc.want[name] {
				t.Errorf("%s on %s: Go form %v, VM %v, want %v", tc.match, name, got, vm, tc.want[name])
			}
		}
	}
}
