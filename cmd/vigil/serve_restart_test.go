package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest/pipeline"
)

// TestServe_GracefulRestartKeepsWindows stops vigil in the middle of a
// window: the stop saves the window state, the restart restores it (instead
// of re-reading the stream) and the window completes across the restart.
func TestServe_GracefulRestartKeepsWindows(t *testing.T) {
	dir := t.TempDir()
	rules := writeFile(t, dir, "rules.yaml", []byte(`rules:
- id: test-burst
  title: Forbidden burst
  severity: high
  audit: {level: Metadata, resources: [{group: "", resources: ["configmaps"]}]}
  match: responseStatus.code == 403
  window: {kind: threshold, by: [user.username], within: 1h, count: 3}
  output: "{{ .user.username }} got {{ .count }} forbidden answers"
`))
	cfg := writeFile(t, dir, "config.yaml", []byte("detect:\n  lateness: 1ms\n"))
	dataDir := filepath.Join(dir, "data")
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	event := func(i int) string {
		ts := base.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano)
		return fmt.Sprintf(`{"auditID":"r-%d","stage":"ResponseComplete","verb":"get","user":{"username":"eve"},"objectRef":{"resource":"configmaps","namespace":"ns","name":"cm"},"responseStatus":{"code":403},"requestReceivedTimestamp":%q}`, i, ts)
	}
	run := func(events ...string) (stdout, stderr string) {
		addr, ops := freePort(t), freePort(t)
		out, errb := &syncBuffer{}, &syncBuffer{}
		a := &app{stdin: strings.NewReader(""), stdout: out, stderr: errb, logger: slog.New(slog.NewJSONHandler(errb, nil))}
		f := serveFlags{ruleFlags: ruleFlags{config: cfg, rules: []string{rules}, noBuiltin: true},
			insecureListen: addr, opsListen: ops, dataDir: dataDir}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.serve(ctx, f) }()
		s := &servedVigil{webhook: addr, ops: ops, stderr: errb, stdout: out, cancel: cancel, done: done}
		s.waitReady(t)
		before := metric(t, ops, "vigil_serve_processed_events_total")
		body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(events, ",") + `]}`
		resp, err := http.Post("http://"+addr+"/audit", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST: %s", resp.Status)
		}
		waitMetric(t, ops, "vigil_serve_processed_events_total", before+float64(len(events)), 30*time.Second)
		s.stop(t)
		return out.String(), errb.String()
	}

	out, _ := run(event(0), event(1))
	if strings.Contains(out, "test-burst") {
		t.Fatalf("fired on two events:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dataDir, pipeline.WindowsFile)); err != nil {
		t.Fatalf("graceful stop saved no window state: %v", err)
	}
	out, stderr := run(event(2))
	if !strings.Contains(stderr, "restored window state") {
		t.Errorf("restart did not restore the saved state:\n%s", stderr)
	}
	alerts := parseAlerts(t, out)
	if len(alerts) != 1 || alerts[0].Rule != "test-burst" || alerts[0].Count != 3 {
		t.Fatalf("want one test-burst alert over 3 events across the restart, got %+v", alerts)
	}
}
