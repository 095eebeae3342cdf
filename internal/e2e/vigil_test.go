package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest/jetstream"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
	"github.com/vigil-k8s/vigil/internal/e2e"
	"github.com/vigil-k8s/vigil/policies"
	"github.com/vigil-k8s/vigil/sinks"
	"github.com/vigil-k8s/vigil/sinks/respond"
)

// The control plane every test of this package shares; TestMain stops it.
var cp *e2e.ControlPlane

func TestMain(m *testing.M) {
	code := func() int {
		if _, _, skip := e2e.Binaries(); skip != "" {
			// Every test skips with the reason.
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "vigil-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		policy, err := os.ReadFile("../../deploy/audit-policy.yaml")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if cp, err = e2e.Start(ctx, e2e.Options{Dir: dir, AuditPolicy: policy}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cp.Stop()
		return m.Run()
	}()
	os.Exit(code)
}

func needControlPlane(t *testing.T) *e2e.ControlPlane {
	t.Helper()
	if _, _, skip := e2e.Binaries(); skip != "" {
		t.Skip(skip)
	}
	return cp
}

// vigil is vigil serve in-process, wired as vigil serve wires it: the
// webhook stores events in the embedded JetStream queue, detection runs
// the built-in rules, alerts go to VIGIL_ALERTS, and a file sink and the
// responder each read it with their own durable consumer.
type vigil struct {
	journal, alerts string
	stop            func()
}

func startVigil(t *testing.T, cp *e2e.ControlPlane, token, responses string) *vigil {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	v := &vigil{journal: filepath.Join(dir, "responses.jsonl"), alerts: filepath.Join(dir, "alerts.jsonl")}
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(responses), &node); err != nil {
		t.Fatal(err)
	}
	rc, err := respond.DecodeConfig(&node)
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := respond.NewCluster(cp.RESTConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	j, err := respond.OpenJournal(v.journal, respond.JournalOptions{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	set := metrics.NewSet()
	resp, err := respond.New(rc, respond.Options{Cluster: cluster, Journal: j, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	q, err := jetstream.Open(ctx, jetstream.Options{Dir: filepath.Join(dir, "queue"), Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	disp, err := sinks.Build(ctx, sinks.Config{Sinks: []sinks.SinkConfig{sinks.FileSink("alerts", v.alerts)}},
		sinks.WithDurable(q.JetStream(), sinks.DurableOptions{FetchWait: 100 * time.Millisecond}),
		sinks.WithNATS(q.Conn()), sinks.WithMetrics(set), sinks.WithConsumer("respond", resp))
	if err != nil {
		t.Fatal(err)
	}
	resp.Start(disp)
	srv, err := pipeline.New(ctx, pipeline.Config{Rules: rs, Queue: q, Alerts: disp, DataDir: dir,
		Listen: "127.0.0.1:0", Metrics: set, DrainTimeout: 10 * time.Second,
		// Window alerts wait for the watermark to pass their events by
		// the lateness: seconds, not the default minutes.
		Lateness: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	target, _ := url.Parse("http://" + srv.WebhookAddr().String())
	cp.SetAuditHandler(httputil.NewSingleHostReverseProxy(target))
	v.stop = sync.OnceFunc(func() {
		cp.SetAuditHandler(nil)
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("vigil: %v", err)
		}
	})
	t.Cleanup(v.stop)
	return v
}
