package sinks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks"
	"github.com/vigil-k8s/vigil/sinks/sinktest"
	"github.com/vigil-k8s/vigil/sinks/webhook"
)

// endpoint is a webhook receiver that counts the distinct alerts it got
// and answers with status() (503 during an outage).
type endpoint struct {
	mu     sync.Mutex
	seen   map[string]bool
	status func() int
	// full is closed once want distinct alerts arrived.
	want int
	full chan struct{}
}

func newEndpoint(want int, status func() int) *endpoint {
	return &endpoint{seen: map[string]bool{}, status: status, want: want, full: make(chan struct{})}
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code := e.status()
	if code != http.StatusOK {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(code)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var alerts []detect.Alert
	if err := json.Unmarshal(b, &alerts); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	before := len(e.seen)
	for _, a := range alerts {
		e.seen[a.Fingerprint] = true
	}
	if before < e.want && len(e.seen) >= e.want {
		close(e.full)
	}
	e.mu.Unlock()
}

func (e *endpoint) count() int { e.mu.Lock(); defer e.mu.Unlock(); return len(e.seen) }

func manyAlerts(n int) []detect.Alert {
	base := sinktest.Alerts()[2]
	out := make([]detect.Alert, n)
	for i := range out {
		a := base
		a.GroupKey = fmt.Sprintf("user-%d", i)
		a.Fingerprint = detect.Fingerprint(a.Rule, a.GroupKey, a.FirstTime)
		out[i] = a
	}
	return out
}

func hookSink(name, url string) sinks.SinkConfig {
	return sinks.SinkConfig{Name: name, Type: "webhook",
		Delivery: sinks.Delivery{BatchSize: 50, Retry: sinks.RetryConfig{Initial: detect.Duration(2 * time.Millisecond), Max: detect.Duration(20 * time.Millisecond)}},
		Settings: &webhook.Config{URL: url, Batch: true}}
}

// TestDispatcher_outage: one sink answers 503 until the healthy sink has
// everything; Dispatch never waits for it, the healthy sink is not held
// back, and after recovery every alert arrives.
func TestDispatcher_outage(t *testing.T) {
	const n = 2000
	recovered := make(chan struct{})
	flaky := newEndpoint(n, func() int {
		select {
		case <-recovered:
			return http.StatusOK
		default:
			return http.StatusServiceUnavailable
		}
	})
	healthy := newEndpoint(n, func() int { return http.StatusOK })
	fs, hs := httptest.NewServer(flaky), httptest.NewServer(healthy)
	defer fs.Close()
	defer hs.Close()
	d, err := sinks.Build(t.Context(), sinks.Config{Sinks: []sinks.SinkConfig{hookSink("flaky", fs.URL), hookSink("healthy", hs.URL)}})
	if err != nil {
		t.Fatal(err)
	}
	alerts := manyAlerts(n)
	// Baseline: the same dispatch with every sink healthy.
	base := newEndpoint(n, func() int { return http.StatusOK })
	bs := httptest.NewServer(base)
	defer bs.Close()
	bd, err := sinks.Build(t.Context(), sinks.Config{Sinks: []sinks.SinkConfig{hookSink("a", bs.URL), hookSink("b", bs.URL)}})
	if err != nil {
		t.Fatal(err)
	}
	baseline := dispatchAll(t, bd, alerts)
	if err := bd.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if took := dispatchAll(t, d, alerts); took > 3*baseline+200*time.Millisecond {
		t.Errorf("dispatching %d alerts took %v during an outage, %v with healthy sinks", n, took, baseline)
	}
	select {
	case <-healthy.full:
	case <-time.After(20 * time.Second):
		t.Fatalf("healthy sink got %d of %d alerts while the other was down", healthy.count(), n)
	}
	if got := flaky.count(); got != 0 {
		t.Fatalf("flaky sink accepted %d alerts during its outage", got)
	}
	close(recovered)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if flaky.count() != n || healthy.count() != n {
		t.Errorf("delivered %d and %d of %d alerts", flaky.count(), healthy.count(), n)
	}
}

func dispatchAll(t *testing.T, d *sinks.Dispatcher, alerts []detect.Alert) time.Duration {
	t.Helper()
	start := time.Now()
	for i := range alerts {
		if err := d.Dispatch(t.Context(), alerts[i]); err != nil {
			t.Fatal(err)
		}
	}
	return time.Since(start)
}

func startJetStream(t *testing.T, dir string) (*server.Server, jetstream.JetStream) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := natsgo.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); ns.Shutdown() })
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return ns, js
}

// TestDispatcher_durableCrash: alerts pending for a dead sink survive the
// process: the server and dispatcher go away without acking them, and a new
// dispatcher on the same JetStream store delivers every one.
func TestDispatcher_durableCrash(t *testing.T) {
	const n = 300
	dir := t.TempDir()
	dead := newEndpoint(n, func() int { return http.StatusServiceUnavailable })
	live := newEndpoint(n, func() int { return http.StatusOK })
	ds, ls := httptest.NewServer(dead), httptest.NewServer(live)
	defer ds.Close()
	defer ls.Close()
	opts := sinks.DurableOptions{AckWait: time.Second, FetchWait: 50 * time.Millisecond}

	ns, js := startJetStream(t, dir)
	cfg := sinks.Config{Sinks: []sinks.SinkConfig{hookSink("pager", ds.URL), hookSink("siem", ls.URL)}}
	d1, err := sinks.Build(t.Context(), cfg, sinks.WithDurable(js, opts))
	if err != nil {
		t.Fatal(err)
	}
	alerts := manyAlerts(n)
	if err := d1.Dispatch(t.Context(), alerts...); err != nil {
		t.Fatal(err)
	}
	// Dispatching the same alerts again (a redelivered event batch) stores
	// nothing new: the fingerprint is the message id.
	if err := d1.Dispatch(t.Context(), alerts[:10]...); err != nil {
		t.Fatal(err)
	}
	select {
	case <-live.full:
	case <-time.After(20 * time.Second):
		t.Fatalf("live sink got %d of %d", live.count(), n)
	}
	// Crash: the server goes down under the dispatcher, whose state is
	// then dropped.
	ns.Shutdown()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t0 := time.Now()
	cerr := d1.Close(ctx)
	t.Logf("close took %v: %v", time.Since(t0), cerr)
	cancel()
	if dead.count() != 0 {
		t.Fatalf("dead sink accepted %d alerts", dead.count())
	}

	// Restart on the same store, the pager endpoint back up.
	revived := newEndpoint(n, func() int { return http.StatusOK })
	rs := httptest.NewServer(revived)
	defer rs.Close()
	_, js2 := startJetStream(t, dir)
	cfg2 := sinks.Config{Sinks: []sinks.SinkConfig{hookSink("pager", rs.URL), hookSink("siem", ls.URL)}}
	d2, err := sinks.Build(t.Context(), cfg2, sinks.WithDurable(js2, opts))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-revived.full:
	case <-time.After(30 * time.Second):
		t.Fatalf("after restart the pager got %d of %d", revived.count(), n)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := d2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if live.count() != n {
		t.Errorf("siem got %d distinct alerts, want %d", live.count(), n)
	}
	st, err := js2.Stream(t.Context(), sinks.AlertStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := st.Info(t.Context()); info.State.Msgs != n {
		t.Errorf("stream holds %d alerts, want %d (dedup by fingerprint)", info.State.Msgs, n)
	}
}

// TestDispatcher_durableDeadLetter: a sink that rejects alerts (400) gets
// them dead-lettered with the reason, and acked.
func TestDispatcher_durableDeadLetter(t *testing.T) {
	rejecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "schema mismatch")
	}))
	defer rejecting.Close()
	_, js := startJetStream(t, t.TempDir())
	d, err := sinks.Build(t.Context(), sinks.Config{Sinks: []sinks.SinkConfig{hookSink("strict", rejecting.URL)}},
		sinks.WithDurable(js, sinks.DurableOptions{AckWait: time.Second, FetchWait: 50 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(t.Context())
	alerts := sinktest.Alerts()
	if err := d.Dispatch(t.Context(), alerts...); err != nil {
		t.Fatal(err)
	}
	c, err := js.CreateConsumer(t.Context(), sinks.DeadLetterStream, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy})
	if err != nil {
		t.Fatal(err)
	}
	for i := range alerts {
		m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("dead letter %d: %v", i, err)
		}
		if m.Subject() != sinks.DeadLetterPrefix+"strict" || m.Headers().Get(sinks.HeaderSink) != "strict" {
			t.Errorf("dead letter on %s for %q", m.Subject(), m.Headers().Get(sinks.HeaderSink))
		}
		if r := m.Headers().Get(sinks.HeaderReason); r != "unexpected status 400: schema mismatch" {
			t.Errorf("reason %q", r)
		}
	}
}
