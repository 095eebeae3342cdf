// Package sourcetest runs a live source end to end for its tests: provider
// payloads through the source into a real ingest/pipeline with the
// in-memory queue, with the source restarted mid-stream, and checks that
// the alerts are those of the events, each once.
package sourcetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/envelope"
	"github.com/vigil-k8s/vigil/ingest/logfile"
	"github.com/vigil-k8s/vigil/ingest/memqueue"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
)

// Recording returns the events of a shared real-apiserver recording.
func Recording(t testing.TB, run string) [][]byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "real-apiserver", run, "audit.log.gz")
	r, err := logfile.Open([]string{path}, nil, logfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	var out [][]byte
	for {
		b, err := r.Read(context.Background())
		for _, rec := range b.Records {
			out = append(out, bytes.Clone(rec.Data))
		}
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// People keeps the events of a recording made by people and workloads
// (not the control plane's own system: users): the attacks, in fewer
// events, for transports that deliver slowly in tests.
func People(events [][]byte) [][]byte {
	var out [][]byte
	for _, e := range events {
		var ev struct {
			User struct{ Username string } `json:"user"`
		}
		if json.Unmarshal(e, &ev) != nil {
			continue
		}
		u := ev.User.Username
		if !strings.HasPrefix(u, "system:") || strings.HasPrefix(u, "system:serviceaccount:ci:") || u == "system:anonymous" {
			out = append(out, e)
		}
	}
	return out
}

// rules are single-event rules and an event-time window: what they raise
// does not depend on how the events were batched on the way, so a live
// source's alerts can be compared with a replay's.
const rules = `rules:
- id: forbidden
  title: Forbidden request
  severity: low
  audit: {level: Metadata}
  match: responseStatus.code == 403
  output: "{{ .user.username }} was refused {{ .verb }}"
- id: secret-read
  title: A secret was read
  severity: medium
  audit: {level: Metadata, resources: [{group: "", resources: [secrets]}]}
  match: objectRef.resource == "secrets" && verb in ["get", "list"]
  output: "{{ .user.username }} read secrets"
- id: pod-exec
  title: Exec into a pod
  severity: medium
  audit: {level: Metadata, resources: [{group: "", resources: [pods/exec]}]}
  match: objectRef.subresource == "exec"
  output: "{{ .user.username }} exec in {{ .objectRef.name }}"
- id: writes-burst
  title: Burst of writes
  severity: high
  audit: {level: Metadata}
  match: verb in ["create", "update", "patch", "delete"]
  window: {kind: threshold, by: [user.username], within: 1m, count: 5, cooldown: 10m}
  output: "{{ .user.username }} wrote {{ .count }} times"
`

// Rules compiles rules.
func Rules(t testing.TB) *detect.RuleSet {
	t.Helper()
	cat, err := detect.ParseRuleFile("sourcetest.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// Expected decodes the payloads as the source will and returns the rules
// of the alerts their events raise (sorted, one per alert), and the number
// of events.
func Expected(t testing.TB, rs *detect.RuleSet, provider envelope.Format, payloads [][]byte) ([]string, int) {
	t.Helper()
	var recs []ingest.Record
	d := envelope.Decoder{Format: provider,
		Item: func(it envelope.Item) error {
			recs = append(recs, ingest.Record{Data: it.Data, Cluster: it.Cluster, Origin: it.Origin})
			return nil
		},
		Bad: func(o string, err error, _ []byte) error { return fmt.Errorf("%s: %w", o, err) }}
	for i, p := range payloads {
		if err := d.Payload(p, fmt.Sprint("payload ", i)); err != nil {
			t.Fatal(err)
		}
	}
	var fps []string
	eng, err := detect.New(detect.Options{Rules: rs, Emit: func(a detect.Alert) error { fps = append(fps, a.Rule); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := eng.Process(ctx, ingest.Batch{Records: recs}); err != nil {
		t.Fatal(err)
	}
	if err := eng.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	slices.Sort(fps)
	return fps, len(recs)
}

// alertStore is the pipeline's alert store: it keeps every alert.
type alertStore struct {
	mu     sync.Mutex
	alerts []detect.Alert
}

func (s *alertStore) Dispatch(_ context.Context, as ...detect.Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alerts = append(s.alerts, as...)
	return nil
}
func (s *alertStore) WaitDelivered(context.Context) error { return nil }
func (s *alertStore) Close(context.Context) error         { return nil }

// Restarting runs a source in generations within one pipeline.Source.
// The first generation crashes after its CrashAfter-th successful
// Publish: the publish is reported failed, as when the process dies
// between storing events and acknowledging them upstream, and the
// generation is stopped. A new source made by Make then takes over.
type Restarting struct {
	Make       func() pipeline.Source
	CrashAfter int

	mu        sync.Mutex
	keys      map[string]bool
	publishes int
	// Crashed is closed when the first generation has stopped.
	Crashed chan struct{}
}

// NewRestarting returns a Restarting source.
func NewRestarting(crashAfter int, mk func() pipeline.Source) *Restarting {
	return &Restarting{Make: mk, CrashAfter: crashAfter, keys: map[string]bool{}, Crashed: make(chan struct{})}
}

// Name implements pipeline.Source.
func (r *Restarting) Name() string { return "restarting" }

// Stored returns how many distinct events were stored.
func (r *Restarting) Stored() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

type countingPublisher struct {
	r     *Restarting
	pub   pipeline.Publisher
	crash func()
}

func (c *countingPublisher) Publish(ctx context.Context, entries []ingest.Entry) error {
	if err := c.pub.Publish(ctx, entries); err != nil {
		return err
	}
	c.r.mu.Lock()
	for _, e := range entries {
		c.r.keys[e.Key] = true
	}
	c.r.publishes++
	crash := c.crash != nil && c.r.publishes == c.r.CrashAfter
	c.r.mu.Unlock()
	if crash {
		c.crash()
		return errors.New("crashed after storing")
	}
	return nil
}

// DeadLetter hands dead letters to the queue.
func (c *countingPublisher) DeadLetter(ctx context.Context, items []ingest.DeadLetter) error {
	if dl, ok := c.pub.(ingest.DeadLetterer); ok {
		return dl.DeadLetter(ctx, items)
	}
	return nil
}

// Run implements pipeline.Source.
func (r *Restarting) Run(ctx context.Context, pub pipeline.Publisher) error {
	gctx, crash := context.WithCancel(ctx)
	err := r.Make().Run(gctx, &countingPublisher{r: r, pub: pub, crash: crash})
	crash()
	close(r.Crashed)
	if err != nil && ctx.Err() == nil && gctx.Err() == nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	return r.Make().Run(ctx, &countingPublisher{r: r, pub: pub})
}

// Check runs src in a pipeline with an in-memory queue until it stored
// events distinct events and detection took them all, and stops the
// pipeline. Detection must have evaluated each event exactly once, no
// alert may be raised twice, and each rule must raise as many alerts as
// want says (which alerts a rule raises may depend on the order events
// arrive in). feed, when set, runs once the pipeline is up (it sends the
// payloads upstream).
func Check(t *testing.T, rs *detect.RuleSet, src *Restarting, events int, want []string, feed func()) {
	t.Helper()
	q := memqueue.New(memqueue.Options{})
	store := &alertStore{}
	set := metrics.NewSet()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := pipeline.New(ctx, pipeline.Config{Rules: rs, Queue: q, Alerts: store, DataDir: t.TempDir(), Metrics: set,
		Listen: "127.0.0.1:0", Sources: []pipeline.Source{src}, DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx) }()
	if feed != nil {
		feed()
	}
	deadline := time.Now().Add(20 * time.Second)
	for src.Stored() < events || q.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stored %d of %d events, %d pending", src.Stored(), events, q.Pending())
		}
		select {
		case err := <-runErr:
			t.Fatalf("pipeline stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case <-src.Crashed:
	default:
		t.Fatal("the source never crashed: CrashAfter is past the stream's end")
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	if n := set.GetOrCreateCounter("vigil_detect_events_total").Get(); n != uint64(events) {
		t.Errorf("detection evaluated %d events, want each of the %d once", n, events)
	}
	var got, fps []string
	for _, a := range store.alerts {
		got = append(got, a.Rule)
		fps = append(fps, a.Fingerprint)
	}
	slices.Sort(got)
	slices.Sort(fps)
	if n := len(fps) - len(slices.Compact(fps)); n > 0 {
		t.Errorf("%d alerts raised twice", n)
	}
	if !slices.Equal(got, want) {
		t.Errorf("alerts by rule %v, want %v (missing %q, unexpected %q)", counts(got), counts(want), minus(want, got), minus(got, want))
	}
	if len(want) == 0 {
		t.Error("the events raise no alert: the test checks nothing")
	}
}

func counts(rules []string) map[string]int {
	m := map[string]int{}
	for _, r := range rules {
		m[r]++
	}
	return m
}

// minus returns the elements of a not in b.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
