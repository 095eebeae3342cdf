package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	auditwebhook "k8s.io/apiserver/plugin/pkg/audit/webhook"

	"github.com/vigil-k8s/vigil/detect"
)

// deepBatch is one EventList's worth of events: two privileged pods and,
// between them, a custom resource whose body nests 400 levels deep.
func deepBatch() [][]byte {
	pod := func(id, user, name string, at int) []byte {
		return fmt.Appendf(nil, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"%s","stage":"ResponseComplete",`+
			`"requestURI":"/api/v1/namespaces/team-a/pods","verb":"create","user":{"username":"%s","groups":["system:authenticated"]},`+
			`"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.34.1","objectRef":{"resource":"pods","namespace":"team-a","name":"%s","apiVersion":"v1"},`+
			`"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"%s","namespace":"team-a"},`+
			`"spec":{"containers":[{"name":"shell","image":"busybox:1.36","securityContext":{"privileged":true}}]}},`+
			`"requestReceivedTimestamp":"2026-11-22T06:00:0%d.000001Z","stageTimestamp":"2026-11-22T06:00:0%d.000200Z"}`, id, user, name, name, at, at)
	}
	deep := fmt.Appendf(nil, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"deep-cr","stage":"ResponseComplete",`+
		`"requestURI":"/apis/example.com/v1/namespaces/team-a/widgets","verb":"create","user":{"username":"mallory","groups":["system:authenticated"]},`+
		`"sourceIPs":["10.0.0.9"],"userAgent":"kubectl/v1.34.1","objectRef":{"resource":"widgets","namespace":"team-a","name":"deep","apiGroup":"example.com","apiVersion":"v1"},`+
		`"responseStatus":{"metadata":{},"code":201},"requestObject":{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"deep"},"spec":%s},`+
		`"requestReceivedTimestamp":"2026-11-22T06:00:02.000001Z","stageTimestamp":"2026-11-22T06:00:02.000200Z"}`,
		strings.Repeat(`{"x":[`, 200)+`1`+strings.Repeat(`]}`, 200))
	return [][]byte{pod("pod-1", "mallory", "shell-1", 1), deep, pod("pod-2", "eve", "shell-2", 3)}
}

// wantDeepAlerts are the alerts of the privileged-pod and unparseable-body
// rules the deep batch must raise, as "rule auditID".
var wantDeepAlerts = []string{"audit-event-body-unparsed deep-cr", "pod-privileged pod-1", "pod-privileged pod-2"}

func deepAlertKeys(as []detect.Alert) []string {
	var out []string
	for _, a := range as {
		if a.Rule == "pod-privileged" || a.Rule == "audit-event-body-unparsed" {
			out = append(out, a.Rule+" "+strings.Join(a.AuditIDs, ","))
		}
	}
	slices.Sort(out)
	return out
}

// TestServe_DeepBodyKeepsTheBatch sends the deep batch as one EventList
// through the apiserver's own webhook backend: the batch is accepted, both
// privileged pods are detected and the deep event is evaluated on its
// metadata, raising the unparseable-body alert.
func TestServe_DeepBodyKeepsTheBatch(t *testing.T) {
	dir := t.TempDir()
	s := startServe(t, dir)
	wh, err := auditwebhook.NewBackend(filepath.Join(dir, "webhook-kubeconfig.yaml"), auditv1.SchemeGroupVersion,
		wait.Backoff{Duration: 100 * time.Millisecond, Factor: 1.5, Steps: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	events := toInternal(t, deepBatch())
	// One call, one EventList: what the apiserver would retry and drop
	// as a whole.
	if !wh.ProcessEvents(events...) {
		t.Fatalf("the webhook backend failed to send the batch:\n%s", s.stderr.String())
	}
	waitMetric(t, s.ops, "vigil_serve_processed_events_total", 3, 30*time.Second)
	if got := metric(t, s.ops, "vigil_webhook_salvaged_events_total"); got != 1 {
		t.Errorf("vigil_webhook_salvaged_events_total = %v, want 1", got)
	}
	if got := metric(t, s.ops, "vigil_webhook_rejected_requests_total"); got != 0 {
		t.Errorf("%v requests refused", got)
	}
	s.stop(t)
	if got := deepAlertKeys(parseAlerts(t, s.stdout.String())); !slices.Equal(got, wantDeepAlerts) {
		t.Errorf("alerts %q, want %q", got, wantDeepAlerts)
	}
}

// TestReplay_DeepBody replays the deep batch as an EventList document and as
// JSON lines: the same alerts as serve, the deep event counted as salvaged,
// and --fail-on-bad makes it exit 3.
func TestReplay_DeepBody(t *testing.T) {
	dir := t.TempDir()
	batch := deepBatch()
	var items []string
	for _, e := range batch {
		items = append(items, string(e))
	}
	list := writeFile(t, dir, "list.json", []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`+strings.Join(items, ",")+"]}\n"))
	lines := writeFile(t, dir, "audit.log", []byte(strings.Join(items, "\n")+"\n"))
	for _, in := range []string{list, lines} {
		t.Run(filepath.Base(in), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "alerts.jsonl")
			code, _, stderr := vigil(t, "", "replay", in, "-o", out)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if got := deepAlertKeys(readAlerts(t, out)); !slices.Equal(got, wantDeepAlerts) {
				t.Errorf("alerts %q, want %q", got, wantDeepAlerts)
			}
			for _, want := range []string{"3 events", "0 dropped (not audit events), 1 salvaged", "salvaged: " + in, "levels deep"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("summary lacks %q:\n%s", want, stderr)
				}
			}
			code, _, stderr = vigil(t, "", "replay", in, "-o", out, "--fail-on-bad")
			if code != exitGate || !strings.Contains(stderr, "0 inputs dropped and 1 read only in part (--fail-on-bad)") {
				t.Errorf("--fail-on-bad: exit %d, want %d:\n%s", code, exitGate, stderr)
			}
		})
	}
}
