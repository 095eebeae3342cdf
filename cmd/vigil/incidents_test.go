package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect/incident"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/auditgen"
)

const run5Log = "../../testdata/real-apiserver/run5/audit.log.gz"

// The rogue service account of run5: bound to cluster-admin by the admin,
// it reads kube-system secrets with a script. Its incident comes first and
// holds the bind, the secret reads and the admin's exec into pods, with
// the tactics reached.
func TestReplay_IncidentsRun5(t *testing.T) {
	const deployer = "system:serviceaccount:ci:deployer"
	path := filepath.Join(t.TempDir(), "incidents.json")
	code, _, errs := vigil(t, "", "replay", "-q", "-o", os.DevNull, "--incidents", path, run5Log)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var incs []incident.Incident
	if err := json.Unmarshal(data, &incs); err != nil {
		t.Fatal(err)
	}
	if len(incs) == 0 {
		t.Fatal("no incidents")
	}
	for i := 1; i < len(incs); i++ {
		if incs[i].Score > incs[i-1].Score {
			t.Errorf("incident %d scores %d, above %d", i, incs[i].Score, incs[i-1].Score)
		}
	}
	top := incs[0]
	if !slices.ContainsFunc(top.Identities, func(id incident.Identity) bool { return id.Name == deployer }) {
		t.Fatalf("the first incident is not %s's: %s", deployer, top.Summary)
	}
	rules := map[string][]incident.AlertRef{}
	for _, a := range top.Alerts {
		rules[a.Rule] = append(rules[a.Rule], a)
	}
	for _, c := range []struct{ what, rule, user, object string }{
		{"bind", "rbac-cluster-admin-binding", "kubernetes-admin", ""},
		{"bind used", "grant-then-use", deployer, "secrets in kube-system"},
		{"secret reads", "secret-read", deployer, "secrets in kube-system"},
		{"secret reads", "secret-read-by-script-client", deployer, "secrets in kube-system"},
		{"exec", "pod-exec", "kubernetes-admin", "pods/exec team-a/web"},
	} {
		if !slices.ContainsFunc(rules[c.rule], func(a incident.AlertRef) bool { return a.User == c.user && (c.object == "" || a.Object == c.object) }) {
			t.Errorf("no %s alert: %s by %s on %s", c.what, c.rule, c.user, c.object)
		}
	}
	if !slices.ContainsFunc(top.Links, func(l incident.Link) bool {
		return l.Kind == "binding" && l.From == "kubernetes-admin" && l.To == deployer
	}) {
		t.Errorf("no binding link from kubernetes-admin to %s: %+v", deployer, top.Links)
	}
	var tactics []string
	for _, tc := range top.Tactics {
		tactics = append(tactics, tc.Tactic)
	}
	for _, want := range []string{"discovery", "credential-access", "privilege-escalation", "persistence", "execution"} {
		if !slices.Contains(tactics, want) {
			t.Errorf("tactics %v lack %s", tactics, want)
		}
	}
	if len(top.Stages) != 5 || top.Summary == "" || top.FirstTime.IsZero() || !top.LastTime.After(top.FirstTime) {
		t.Errorf("stages %v, summary %q, times %s..%s", top.Stages, top.Summary, top.FirstTime, top.LastTime)
	}
}

func TestReplay_ForensicFlagErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"policy without report", []string{"--audit-policy", "../../testdata/real-apiserver/audit-policy.yaml"}, "--audit-policy is read for the report"},
		{"missing directory", []string{"--report", filepath.Join(dir, "no", "r.html")}, "no such directory"},
		{"directory as file", []string{"--incidents", dir}, "is a directory"},
		{"bad policy", []string{"--report", filepath.Join(dir, "r.html"), "--audit-policy", run5Log}, "audit.log.gz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := vigil(t, "", append([]string{"replay", "-q", "-o", os.DevNull, run5Log}, tt.args...)...)
			if code != exitUsage || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d mentioning %q", code, errs, exitUsage, tt.want)
			}
		})
	}
}

func TestOriginFile(t *testing.T) {
	for origin, want := range map[string]string{"a/audit.log:12": "a/audit.log", "stdin:1": "stdin",
		"events.json: item 3": "events.json", "c:/logs/x.log:4": "c:/logs/x.log", "bare": "bare"} {
		if got := originFile(origin); got != want {
			t.Errorf("originFile(%q) = %q, want %q", origin, got, want)
		}
		for _, file := range []string{want, "a", "c:/logs/x.log:4", "stdin:1"} {
			if got := sameFile(origin, file); got != (file == want) {
				t.Errorf("sameFile(%q, %q) = %v, want %v", origin, file, got, file == want)
			}
		}
	}
}

func TestInputLog(t *testing.T) {
	rec := func(origin string) ingest.Record { return ingest.Record{Origin: origin} }
	l := &inputLog{activity: incident.NewSeries[string](100)}
	l.batch(ingest.Batch{Records: []ingest.Record{rec("a.log:1"), rec("a.log:2"), rec("a.log:3")}})
	l.batch(ingest.Batch{Records: []ingest.Record{rec("b.json: item 1"), rec("b.json: item 2")}})
	base := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	for _, ms := range []int{500, 700, 2000, -1000} {
		l.event(base.Add(time.Duration(ms) * time.Millisecond))
	}
	l.event(time.Time{}) // an event without a time
	s := l.snapshot()
	if fmt.Sprint(s.files) != "[{a.log 3} {b.json 2}]" || s.events != 5 {
		t.Errorf("files %v, events %d", s.files, s.events)
	}
	if !s.from.Equal(base.Add(-time.Second)) || !s.to.Equal(base.Add(2*time.Second)) {
		t.Errorf("range %s..%s", s.from, s.to)
	}
	var got []string
	for _, p := range s.points {
		got = append(got, fmt.Sprintf("%s=%d", p.Time.Format("15:04:05"), p.N))
	}
	if want := "[05:59:59=1 06:00:00=2 06:00:02=1]"; fmt.Sprint(got) != want || s.step != time.Second {
		t.Errorf("activity %v step %s, want %s", got, s.step, want)
	}
}

// BenchmarkReplay_Report measures what --incidents and --report add to a
// replay: over VIGIL_BENCH_LOG (vigil-gen -n 1000000 -o FILE), else over
// 100,000 generated events.
func BenchmarkReplay_Report(b *testing.B) {
	path := os.Getenv("VIGIL_BENCH_LOG")
	if path == "" {
		path = filepath.Join(b.TempDir(), "audit.log")
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := auditgen.Write(f, auditgen.Options{Seed: 1}, 100_000); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	out := b.TempDir()
	for _, bc := range []struct {
		name string
		args []string
	}{
		{"plain", nil},
		{"report", []string{"--incidents", filepath.Join(out, "i.json"), "--report", filepath.Join(out, "r.html")}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			args := append([]string{"replay", "-q", "-o", os.DevNull, path}, bc.args...)
			for b.Loop() {
				var errb bytes.Buffer
				if code := run(b.Context(), args, strings.NewReader(""), io.Discard, &errb); code != 0 {
					b.Fatalf("exit %d: %s", code, errb.String())
				}
			}
		})
	}
}
