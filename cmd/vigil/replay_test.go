package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/detect/incident"
	"github.com/vigil-k8s/vigil/internal/golden"
)

// vigil runs the command in-process and returns its exit code and output.
func vigil(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func readAlerts(t *testing.T, path string) []detect.Alert {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []detect.Alert
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var a detect.Alert
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("alert line %q: %v", sc.Text(), err)
		}
		if a.Rule != incident.Rule { // serve's own, replay writes incidents apart
			out = append(out, a)
		}
	}
	return out
}

type slice struct {
	name       string
	start, end time.Time
}

// readTimeline parses a scenario timeline.tsv into slices.
func readTimeline(t *testing.T, path string) []slice {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	starts := map[string]time.Time{}
	var out []slice
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n")[1:] {
		f := strings.Split(line, "\t")
		ts, err := time.Parse(time.RFC3339Nano, f[0])
		if err != nil {
			t.Fatal(err)
		}
		switch f[2] {
		case "start":
			starts[f[1]] = ts
		case "end":
			out = append(out, slice{f[1], starts[f[1]], ts})
		}
	}
	return out
}

func sliceOf(slices []slice, ts time.Time) string {
	for _, s := range slices {
		if !ts.Before(s.start) && !ts.After(s.end) {
			return s.name
		}
	}
	return "background"
}

// TestReplay_RealCaptures replays the events captured from a real
// kube-apiserver and pins what fires: the golden file lists every alert
// with its scenario slice, the benign slice and the background traffic
// raise nothing of medium severity or above, and each attack raises the
// detections it must.
func TestReplay_RealCaptures(t *testing.T) {
	for _, run := range []string{"run5", "run2"} {
		t.Run(run, func(t *testing.T) {
			dir := filepath.Join("..", "..", "testdata", "real-apiserver", run)
			out := filepath.Join(t.TempDir(), "alerts.jsonl")
			code, _, stderr := vigil(t, "", "replay", filepath.Join(dir, "audit.log.gz"), "-o", out)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			alerts := readAlerts(t, out)
			timeline := readTimeline(t, filepath.Join(dir, "timeline.tsv"))
			var lines []string
			found := map[string]bool{}
			for _, a := range alerts {
				s := sliceOf(timeline, a.Time)
				lines = append(lines, fmt.Sprintf("%s %-14s %-8s %-45s %s", a.Time.Format("15:04:05.000"), s, a.Severity, a.Rule, a.User.Username))
				found[s+" "+a.Rule+" "+a.User.Username] = true
				if (s == "f_benign" || s == "background") && a.Severity >= detect.SeverityMedium {
					t.Errorf("%s alert %s (%s) for %s in %s: %s", a.Severity, a.Rule, a.Time.Format(time.RFC3339Nano), a.User.Username, s, a.Message)
				}
			}
			for _, want := range expectedDetections {
				if !found[want] {
					t.Errorf("missing detection %q", want)
				}
			}
			golden.Check(t, []byte(strings.Join(lines, "\n")+"\n"), filepath.Join("testdata", run+".alerts.txt"))
		})
	}
}

// expectedDetections are "slice rule user" triples each capture must raise,
// from the scenarios' descriptions (testdata/real-apiserver).
var expectedDetections = []string{
	"a_forbidden_burst forbidden-burst-user mallory",
	"a_forbidden_burst forbidden-burst-source-ip mallory",
	"a_forbidden_burst discovery-sweep mallory",
	"a_forbidden_burst impersonation-denied mallory",
	"a_forbidden_burst rbac-self-review mallory",
	"a_forbidden_burst secret-access-denied mallory",
	"b_secret_reads secret-enumeration system:serviceaccount:ci:secret-reader",
	"b_secret_reads secret-list-all-namespaces-by-serviceaccount system:serviceaccount:ci:secret-reader",
	"c_exec pod-exec kubernetes-admin",
	"c_exec pod-attach kubernetes-admin",
	"c_exec pod-port-forward kubernetes-admin",
	"c_exec exec-credential-access kubernetes-admin",
	"c_exec exec-copy-from-pod kubernetes-admin",
	"c_exec pod-ephemeral-container kubernetes-admin",
	"c_exec node-proxy-access kubernetes-admin",
	"d_privilege_bindings rbac-cluster-admin-binding kubernetes-admin",
	"d_privilege_bindings rbac-binding-to-public-group kubernetes-admin",
	"d_privilege_bindings rbac-role-wildcard kubernetes-admin",
	"d_privilege_bindings rbac-role-escalate-bind-impersonate kubernetes-admin",
	"d_privilege_bindings rbac-system-role-modified kubernetes-admin",
	"d_privilege_bindings anonymous-request-allowed system:anonymous",
	"d_privilege_bindings grant-then-use mallory",
	"d_privilege_bindings grant-then-use system:anonymous",
	"e1_privileged_pod pod-privileged kubernetes-admin",
	"e1_privileged_pod pod-host-namespaces kubernetes-admin",
	"e1_privileged_pod pod-sensitive-host-path kubernetes-admin",
	"e2_impersonation impersonation-privileged-identity kubernetes-admin",
	"e2_impersonation impersonation-denied alice",
	"e3_token_request serviceaccount-token-requested-kube-system kubernetes-admin",
	"e4_webhook_config admission-webhook-changed kubernetes-admin",
	"e5_delete_events events-deleted kubernetes-admin",
	"e6_anonymous grant-then-use system:serviceaccount:ci:deployer",
	"e6_anonymous serviceaccount-unusual-user-agent system:serviceaccount:ci:deployer",
	"e7_csr csr-privileged-identity-refused system:serviceaccount:ci:deployer",
	"e7_csr csr-approved kubernetes-admin",
	"e7_csr control-plane-identity-unexpected-client system:kube-controller-manager",
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func gz(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

const goodEvent = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/a/pods/web/exec?command=id","verb":"get","user":{"username":"admin"},"objectRef":{"resource":"pods","subresource":"exec","namespace":"a","name":"web"},"responseStatus":{"code":101},"requestReceivedTimestamp":"2026-11-22T06:27:44.000000Z"}`

// TestReplay_BadInput checks that bad input gives a clear message and the
// run goes on (or stops with --strict).
func TestReplay_BadInput(t *testing.T) {
	dir := t.TempDir()
	badRule := writeFile(t, dir, "bad-rule.yaml", []byte("rules:\n- id: broken\n  title: t\n  severity: high\n  audit: {level: Metadata}\n  match: verb == \n"))
	unknownField := writeFile(t, dir, "unknown.yaml", []byte("rules:\n- id: x\n  title: t\n  severity: high\n  mtach: verb == \"get\"\n"))
	truncatedGz := gz(t, []byte(goodEvent+"\n"+goodEvent+"\n"))
	truncatedGz = truncatedGz[:len(truncatedGz)-12]
	deepExec := strings.NewReplacer(`"auditID":"1"`, `"auditID":"2"`, `"admin"`, `"ops"`, `pods/web/`, `pods/db/`, `"name":"web"`, `"name":"db"`,
		`"requestReceivedTimestamp":"2026-11-22T06:27:44`,
		`"requestObject":`+strings.Repeat("[", 400)+strings.Repeat("]", 400)+`,"requestReceivedTimestamp":"2026-11-22T06:27:45`).Replace(goodEvent)
	listWithBadItem := []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[42,` + goodEvent + `,{"auditID":"x"},` + deepExec + "]}\n")
	cases := []struct {
		name     string
		file     []byte
		args     []string
		wantCode int
		stderr   []string
		alerts   int
	}{
		{"truncated line", []byte(goodEvent + "\n" + goodEvent[:60] + "\n"), nil, 0, []string{"in.log:2", "malformed JSON"}, 1},
		{"not JSON", []byte("hello\n" + goodEvent + "\n"), nil, 0, []string{"in.log:1", "malformed JSON"}, 1},
		{"wrong kind", []byte(`{"kind":"Pod","apiVersion":"v1","auditID":"x","stage":"ResponseComplete","verb":"get"}` + "\n" + goodEvent + "\n"), nil, 0, []string{"in.log:1", `kind "Pod", want Event`}, 1},
		{"wrong apiVersion", []byte(strings.Replace(goodEvent, "audit.k8s.io/v1", "audit.k8s.io/v2", 1) + "\n"), nil, 0, []string{`apiVersion "audit.k8s.io/v2"`}, 0},
		{"huge line", []byte(`{"auditID":"` + strings.Repeat("x", 17<<20) + "\"}\n" + goodEvent + "\n"), nil, 0, []string{"in.log:1", "exceeds the limit"}, 1},
		{"bad gzip", []byte{0x1f, 0x8b, 0, 1, 2, 3}, nil, 0, []string{"in.log", "gzip"}, 0},
		{"truncated gzip", truncatedGz, nil, 0, []string{"in.log", "unexpected EOF"}, 1},
		{"strict stops", []byte("hello\n" + goodEvent + "\n"), []string{"--strict"}, 1, []string{"in.log:1", "malformed JSON"}, 0},
		{"strict stops at a reader error", []byte(goodEvent + "\n[{\"bad\n" + goodEvent + "\n"), []string{"--strict"}, 1, []string{"in.log:2"}, 0},
		{"event list with bad items", listWithBadItem, nil, 0, []string{"in.log:1: item 1", "in.log:1: item 3", "2 dropped (not audit events), 1 salvaged", "salvaged: "}, 2},
		{"salvaged line does not stop strict", []byte(deepExec + "\n" + goodEvent + "\n"), []string{"--strict"}, 0, []string{"in.log:1: JSON nested 401 levels deep", "1 salvaged"}, 2},
		{"fail-on-bad with a dropped line", []byte("hello\n" + goodEvent + "\n"), []string{"--fail-on-bad"}, 3, []string{"1 dropped", "1 inputs dropped and 0 read only in part (--fail-on-bad)"}, 0},
		{"fail-on-bad with a salvaged line", []byte(deepExec + "\n"), []string{"--fail-on-bad"}, 3, []string{"1 salvaged", "0 inputs dropped and 1 read only in part"}, 0},
		{"fail-on-bad with good input", []byte(goodEvent + "\n"), []string{"--fail-on-bad"}, 0, nil, 1},
		{"truncated first line loses only itself", []byte(goodEvent[:70] + "\n" + goodEvent + "\n"), nil, 0, []string{"in.log:1", "1 dropped (not audit events), 0 salvaged"}, 1},
		{"missing file", nil, []string{filepath.Join(dir, "nope.log")}, 2, []string{"nope.log", "no such file"}, 0},
		{"rule syntax error", []byte(goodEvent + "\n"), []string{"--rules", badRule}, 2, []string{"bad-rule.yaml: rule broken: match:", "(1:"}, 0},
		{"rule unknown field", []byte(goodEvent + "\n"), []string{"--rules", unknownField}, 2, []string{"unknown.yaml", "line 5", "mtach"}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"replay"}
			if c.file != nil {
				args = append(args, writeFile(t, t.TempDir(), "in.log", c.file))
			}
			out := filepath.Join(t.TempDir(), "alerts.jsonl")
			args = append(append(args, c.args...), "-o", out)
			code, _, stderr := vigil(t, "", args...)
			if code != c.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, c.wantCode, stderr)
			}
			for _, s := range c.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if c.wantCode == 0 {
				// The good event is an exec: count the exec rule's alerts,
				// whatever else the packs report about it.
				got := 0
				for _, a := range readAlerts(t, out) {
					if a.Rule == "pod-exec" {
						got++
					}
				}
				if got != c.alerts {
					t.Errorf("got %d pod-exec alerts, want %d", got, c.alerts)
				}
			}
		})
	}
}

func TestReplay_ExitCodesAndInputs(t *testing.T) {
	dir := t.TempDir()
	log := writeFile(t, dir, "audit.log", []byte(goodEvent+"\n"))
	list := writeFile(t, dir, "list.json", []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`+
		strings.Replace(goodEvent, `"kind":"Event","apiVersion":"audit.k8s.io/v1",`, "", 1)+`]}`))
	cases := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string
	}{
		{"fail-on trips", "", []string{"replay", log, "--fail-on", "medium"}, 3, `"rule":"pod-exec"`},
		{"fail-on above", "", []string{"replay", log, "--fail-on", "critical"}, 0, `"rule":"pod-exec"`},
		{"flags after args and text", "", []string{"replay", log, "--format", "text", "-q"}, 0, "MEDIUM   pod-exec: admin"},
		{"stdin dash", goodEvent + "\n", []string{"replay", "-", "-q"}, 0, `"execCommand":"id"`},
		{"EventList document", "", []string{"replay", list, "-q"}, 0, `"rule":"pod-exec"`},
		{"disable", "", []string{"replay", log, "--disable", "pod-exec", "--disable", "system-masters-credential-used", "-q"}, 0, ""},
		{"since skips", "", []string{"replay", log, "--since", "2026-11-23T00:00:00Z", "-q"}, 0, ""},
		{"bad format", "", []string{"replay", log, "--format", "xml"}, 2, ""},
		{"bad fail-on", "", []string{"replay", log, "--fail-on", "urgent"}, 2, ""},
		{"unknown flag", "", []string{"replay", log, "--nope"}, 2, ""},
		{"unknown rule disabled", "", []string{"replay", log, "--disable", "no-such-rule"}, 2, ""},
		{"version", "", []string{"version"}, 0, "vigil "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := vigil(t, c.stdin, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstderr: %s", code, c.code, stderr)
			}
			if c.stdout == "" && c.code == 0 && c.args[0] == "replay" && stdout != "" {
				t.Errorf("want no alerts, got %s", stdout)
			}
			if !strings.Contains(stdout, c.stdout) {
				t.Errorf("stdout lacks %q:\n%s", c.stdout, stdout)
			}
		})
	}
}

func TestRulesTest_BuiltinAndBrokenFixture(t *testing.T) {
	code, out, stderr := vigil(t, "", "rules", "test")
	if code != 0 {
		t.Fatalf("built-in fixtures: exit %d\n%s%s", code, out, stderr)
	}
	broken := writeFile(t, t.TempDir(), "r.yaml", []byte(`rules:
- id: exec-any
  title: exec
  severity: low
  audit: {level: Metadata, resources: [{group: "", resources: [pods/exec]}]}
  match: objectRef.subresource == "exec"
  fixtures:
    fire:
    - name: not an exec
      events: [{verb: get, objectRef: {resource: pods}}]
    quiet:
    - name: an exec
      events: [{verb: get, objectRef: {resource: pods, subresource: exec}, user: {username: bob}}]
`))
	code, out, _ = vigil(t, "", "rules", "test", broken)
	if code != 1 {
		t.Fatalf("broken fixture: exit %d, want 1\n%s", code, out)
	}
	for _, s := range []string{`FAIL  exec-any`, `fire case "not an exec"`, "- want at least 1 alert", "+ got 0 alerts",
		`quiet case "an exec"`, "- want no alert", "+ got 1 alerts", "0 passed, 2 failed"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

// TestReplay_WorkerCountDoesNotMatter replays a real capture with 1, 2 and
// 8 workers: the alerts must be identical, in the same order.
func TestReplay_WorkerCountDoesNotMatter(t *testing.T) {
	in := filepath.Join("..", "..", "testdata", "real-apiserver", "run5", "audit.log.gz")
	var first []byte
	for _, w := range []string{"1", "2", "8"} {
		out := filepath.Join(t.TempDir(), "alerts.jsonl")
		if code, _, stderr := vigil(t, "", "replay", in, "-q", "--workers", w, "-o", out); code != 0 {
			t.Fatalf("workers %s: exit %d: %s", w, code, stderr)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = got
			continue
		}
		if !bytes.Equal(got, first) {
			t.Errorf("workers %s: alerts differ from workers 1", w)
		}
	}
}
