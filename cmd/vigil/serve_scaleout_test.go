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

	"github.com/nats-io/nats-server/v2/server"
)

// TestServe_ScaleOutNATSHandover runs vigil serve as two replicas on one
// NATS server with the flags of the scale-out (--nats-url, --member). A
// burst starts on the first replica alone; the second joins and takes its
// share of the partitions, the first stops gracefully and hands it all
// over, and the burst completes on the second: it alerts exactly once,
// from window state the first replica saved.
func TestServe_ScaleOutNATSHandover(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	dir := t.TempDir()
	rules := writeFile(t, dir, "rules.yaml", []byte(`rules:
- id: test-burst
  title: Forbidden burst
  severity: high
  audit: {level: Metadata}
  match: responseStatus.code == 403
  window: {kind: threshold, by: [user.username], within: 10m, count: 20}
  output: "{{ .user.username }} got {{ .count }} forbidden answers"
`))
	cfg := writeFile(t, dir, "config.yaml", []byte("queue:\n  nats:\n    partitions: 4\n    replicas: 1\n"))
	base := time.Now().UTC()
	post := func(s *servedVigil, from, n int) {
		var items []string
		for i := from; i < from+n; i++ {
			items = append(items, fmt.Sprintf(`{"auditID":"b-%d","stage":"ResponseComplete","verb":"list","user":{"username":"mallory"},`+
				`"objectRef":{"resource":"secrets","namespace":"ns"},"responseStatus":{"code":403},"requestReceivedTimestamp":%q}`,
				i, base.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano)))
		}
		body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(items, ",") + `]}`
		resp, err := http.Post("http://"+s.webhook+"/audit", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST: %s", resp.Status)
		}
	}
	start := func(member string) *servedVigil {
		addr, ops := freePort(t), freePort(t)
		out, errb := &syncBuffer{}, &syncBuffer{}
		a := &app{stdin: strings.NewReader(""), stdout: out, stderr: errb, logger: slog.New(slog.NewJSONHandler(errb, nil))}
		f := serveFlags{ruleFlags: ruleFlags{config: cfg, rules: []string{rules}, noBuiltin: true},
			insecureListen: addr, opsListen: ops, dataDir: filepath.Join(dir, member),
			output: filepath.Join(dir, member+".jsonl"), queue: queueFlags{natsURL: ns.ClientURL(), member: member}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.serve(ctx, f) }()
		s := &servedVigil{webhook: addr, ops: ops, dataDir: f.dataDir, stderr: errb, stdout: out, cancel: cancel, done: done}
		s.waitReady(t)
		return s
	}
	a := start("vigil-a")
	post(a, 0, 10)
	waitMetric(t, a.ops, "vigil_serve_processed_events_total", 10, 30*time.Second)

	// The second replica joins: the first hands over its share (a replica
	// owns a partition from its first message on).
	b := start("vigil-b")
	defer b.stop(t)
	waitMetric(t, a.ops, "vigil_queue_partitions_lost_total", 1, 30*time.Second)
	a.stop(t)
	post(b, 10, 10)
	waitMetric(t, b.ops, "vigil_serve_alerts_sent_total", 1, 30*time.Second)
	if n := metric(t, b.ops, `vigil_serve_partition_restores_total{from="snapshot"}`); n == 0 {
		t.Errorf("the second replica restored no partition from saved state:\n%s", b.stderr.String())
	}
	// The alert is delivered once, to the output of one of the replicas
	// (their sinks share the durable consumer of the alert stream).
	deadline := time.Now().Add(20 * time.Second)
	for {
		var alerts []string
		for _, m := range []string{"vigil-a", "vigil-b"} {
			data, _ := os.ReadFile(filepath.Join(dir, m+".jsonl"))
			for _, al := range parseAlerts(t, string(data)) {
				alerts = append(alerts, fmt.Sprintf("%s %s count %d", al.Rule, al.User.Username, al.Count))
			}
		}
		if len(alerts) == 1 && alerts[0] == "test-burst mallory count 20" {
			return
		}
		if len(alerts) > 1 || time.Now().After(deadline) {
			t.Fatalf("alerts delivered %v, want the burst of 20 once", alerts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
