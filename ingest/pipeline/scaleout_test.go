package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fastjson"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest/partition"
	"github.com/vigil-k8s/vigil/sinks"
)

// burstRules is the rule of the failover tests: forbidden-burst-user of
// the built-in pack.
const burstRules = `rules:
- id: forbidden-burst-user
  title: Burst of forbidden requests from one identity
  severity: high
  audit: {level: Metadata}
  match: responseStatus.code == 403
  window: {kind: threshold, by: [user.username], within: 1m, count: 20, cooldown: 10m}
  output: "{{ .user.username }} was forbidden {{ .count }} times"
`

// scaleQueue is what a replica of the scale-out tests runs on: a
// partitioned queue.
type scaleQueue interface {
	Queue
	partition.Reader
}

// ledger records, across the replicas of a test, which events detection
// acknowledged, which replica processed each partition last, and the
// alerts stored.
type ledger struct {
	mu       sync.Mutex
	acked    map[string]string // auditID -> replica
	partOf   map[string]int    // auditID -> partition
	lastRead map[int]map[string]time.Time
	stored   []detect.Alert
	storedBy []string
	gainedAt map[string]map[int]time.Time // replica -> partition -> gain
}

func newLedger() *ledger {
	return &ledger{acked: map[string]string{}, partOf: map[string]int{}, lastRead: map[int]map[string]time.Time{}, gainedAt: map[string]map[int]time.Time{}}
}

// trackedQueue is a replica's real queue with its reads noted in the
// ledger: an event counts as processed once its batch's Ack returned nil.
// With hold set to a partition, the next batch of that partition is held
// unprocessed until the replica is killed, as by a replica that hangs.
type trackedQueue struct {
	scaleQueue
	name   string
	l      *ledger
	hold   atomic.Int64 // partition+1; 0: none
	held   chan struct{}
	killed chan struct{}
}

func (q *trackedQueue) ReadPartition(ctx context.Context) (partition.Batch, error) {
	b, err := q.scaleQueue.ReadPartition(ctx)
	if err != nil {
		return b, err
	}
	if b.Change == partition.Gained {
		q.l.mu.Lock()
		if q.l.gainedAt[q.name] == nil {
			q.l.gainedAt[q.name] = map[int]time.Time{}
		}
		q.l.gainedAt[q.name][b.Partition] = time.Now()
		q.l.mu.Unlock()
	}
	if b.Change != partition.Records {
		return b, nil
	}
	if h := q.hold.Load(); h != 0 && int(h-1) == b.Partition {
		q.hold.Store(0)
		close(q.held)
		<-q.killed
		return partition.Batch{}, context.Canceled
	}
	var ids []string
	for _, r := range b.Records {
		ids = append(ids, string(fastjson.GetBytes(r.Data, "auditID")))
	}
	q.l.mu.Lock()
	if q.l.lastRead[b.Partition] == nil {
		q.l.lastRead[b.Partition] = map[string]time.Time{}
	}
	q.l.lastRead[b.Partition][q.name] = time.Now()
	q.l.mu.Unlock()
	ack := b.Ack
	b.Ack = func(ctx context.Context, err error) error {
		aerr := ack(ctx, err)
		if err == nil && aerr == nil {
			q.l.mu.Lock()
			for _, id := range ids {
				q.l.acked[id], q.l.partOf[id] = q.name, b.Partition
			}
			q.l.mu.Unlock()
		}
		return aerr
	}
	return b, nil
}

// owner is the replica that read partition p last.
func (l *ledger) owner(p int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var who string
	var at time.Time
	for name, t := range l.lastRead[p] {
		if t.After(at) {
			who, at = name, t
		}
	}
	return who
}

func (l *ledger) ackedBy(id string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked[id]
}

func (l *ledger) partitionOf(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.partOf[id]
}

// countingAlerts is a replica's real alert store; the alerts it stored are
// noted in the ledger. Once dead (the replica was killed) it stores
// nothing.
type countingAlerts struct {
	*sinks.Dispatcher
	name string
	l    *ledger
	dead atomic.Bool
}

func (a *countingAlerts) Dispatch(ctx context.Context, alerts ...detect.Alert) error {
	if a.dead.Load() {
		return errors.New("replica killed")
	}
	if err := a.Dispatcher.Dispatch(ctx, alerts...); err != nil {
		return err
	}
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	for _, al := range alerts {
		a.l.stored = append(a.l.stored, al)
		a.l.storedBy = append(a.l.storedBy, a.name)
	}
	return nil
}

func (l *ledger) alerts(rule string) ([]detect.Alert, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []detect.Alert
	var by []string
	for i, a := range l.stored {
		if a.Rule == rule {
			out = append(out, a)
			by = append(by, l.storedBy[i])
		}
	}
	return out, by
}

// scaleReplica is one running pipeline of a scale-out test.
type scaleReplica struct {
	name   string
	srv    *Server
	q      *trackedQueue
	alerts *countingAlerts
	cancel context.CancelFunc
	done   chan error
}

// replicaSetup is a replica's queue, the JetStream of its alert streams,
// and the shared state of the queue.
type replicaSetup struct {
	name string
	q    scaleQueue
	js   jetstream.JetStream
	// jsReplicas is the number of copies of the alert streams.
	jsReplicas int
	sent       SentSet
	snapshots  Snapshots
}

func startReplica(t *testing.T, l *ledger, rs *detect.RuleSet, s replicaSetup) *scaleReplica {
	t.Helper()
	dir := t.TempDir()
	disp, err := sinks.Build(t.Context(), sinks.Config{Sinks: []sinks.SinkConfig{sinks.FileSink("out", filepath.Join(dir, "alerts.jsonl"))}},
		sinks.WithDurable(s.js, sinks.DurableOptions{Replicas: s.jsReplicas}))
	if err != nil {
		t.Fatal(err)
	}
	r := &scaleReplica{name: s.name, q: &trackedQueue{scaleQueue: s.q, name: s.name, l: l, held: make(chan struct{}), killed: make(chan struct{})},
		alerts: &countingAlerts{Dispatcher: disp, name: s.name, l: l}, done: make(chan error, 1)}
	srv, err := New(t.Context(), Config{Rules: rs, Queue: r.q, Alerts: r.alerts, SentSet: s.sent, Snapshots: s.snapshots,
		SnapshotInterval: 2 * time.Second, DataDir: dir, Listen: "127.0.0.1:0", DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- srv.Run(ctx) }()
	return r
}

// poster posts EventLists to the replicas' webhooks and keeps the auditIDs
// of those answered 200.
type poster struct {
	mu     sync.Mutex
	acked  []string
	client *http.Client
}

func (p *poster) post(r *scaleReplica, events []string, ids []string) error {
	resp, err := p.client.Post("http://"+r.srv.WebhookAddr().String()+"/audit", "application/json", bytes.NewReader(eventList(events...)))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST to %s: %s", r.name, resp.Status)
	}
	p.mu.Lock()
	p.acked = append(p.acked, ids...)
	p.mu.Unlock()
	return nil
}

// steady posts events of 30 users at about 300 events/s to the live
// replicas in turn until ctx ends.
func (p *poster) steady(ctx context.Context, t *testing.T, live func() []*scaleReplica) {
	for i := 0; ctx.Err() == nil; i++ {
		var evs, ids []string
		now := time.Now()
		for u := range 30 {
			id := fmt.Sprintf("steady-%d-%d", i, u)
			evs = append(evs, event(id, fmt.Sprintf("user-%d", u), "get", "pods", 200, now))
			ids = append(ids, id)
		}
		rs := live()
		if err := p.post(rs[i%len(rs)], evs, ids); err != nil && ctx.Err() == nil {
			t.Logf("steady stream (the apiserver retries): %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// burst posts n forbidden requests of user to r, one POST each.
func (p *poster) burst(t *testing.T, r *scaleReplica, user string, from, n int) []string {
	t.Helper()
	var ids []string
	for i := from; i < from+n; i++ {
		id := fmt.Sprintf("%s-burst-%02d", user, i)
		if err := p.post(r, []string{event(id, user, "list", "secrets", 403, time.Now())}, []string{id}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failover is the scenario both queues run: two replicas share the
// partitions under a steady stream; user mallory sends forbidden requests,
// 20 in all, spread over the moment the replica reading mallory's
// partition is killed (kill cuts it from the queue and the alert store
// and then stops it without a drain). The burst must alert exactly once,
// with each of its 20 events counted once, and every event a webhook
// acknowledged must be processed.
func failover(t *testing.T, l *ledger, replicas []*scaleReplica, kill func(victim *scaleReplica), maxFailover time.Duration) {
	p := &poster{client: &http.Client{Timeout: 10 * time.Second}}
	var liveMu sync.Mutex
	live := slices.Clone(replicas)
	liveFn := func() []*scaleReplica { liveMu.Lock(); defer liveMu.Unlock(); return slices.Clone(live) }
	steadyCtx, stopSteady := context.WithCancel(t.Context())
	steadyDone := make(chan struct{})
	go func() { defer close(steadyDone); p.steady(steadyCtx, t, liveFn) }()
	defer func() { stopSteady(); <-steadyDone }()
	for _, r := range replicas {
		waitUntil(t, 20*time.Second, r.name+" ready", func() bool { return r.srv.recv.Ready() })
	}
	waitUntil(t, 20*time.Second, "both replicas processing", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		by := map[string]bool{}
		for _, who := range l.acked {
			by[who] = true
		}
		return len(by) == 2
	})

	// Whose partition mallory's events are in: a harmless event shows it.
	if err := p.post(replicas[0], []string{event("mallory-probe", "mallory", "get", "pods", 200, time.Now())}, []string{"mallory-probe"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the probe processed", func() bool { return l.ackedBy("mallory-probe") != "" })
	var victim, survivor *scaleReplica
	for _, r := range replicas {
		if r.name == l.ackedBy("mallory-probe") {
			victim = r
		} else {
			survivor = r
		}
	}
	t.Logf("mallory's events go to partition %d of %s", l.partitionOf("mallory-probe"), victim.name)

	// Before the kill: some events in the state the victim saved, some
	// processed after that, and three taken but not processed.
	var burst []string
	burst = append(burst, p.burst(t, victim, "mallory", 0, 7)...)
	waitUntil(t, 10*time.Second, "the first events processed", func() bool { return l.ackedBy(burst[6]) != "" })
	time.Sleep(3 * time.Second) // a snapshot is saved (every 2s)
	burst = append(burst, p.burst(t, survivor, "mallory", 7, 6)...)
	waitUntil(t, 10*time.Second, "the next events processed", func() bool { return l.ackedBy(burst[12]) != "" })
	victimPart := l.partitionOf("mallory-probe")
	victim.q.hold.Store(int64(victimPart) + 1)
	burst = append(burst, p.burst(t, survivor, "mallory", 13, 3)...)
	select {
	case <-victim.q.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the victim took no batch of mallory's partition")
	}
	if got, _ := l.alerts("forbidden-burst-user"); len(got) != 0 {
		t.Fatalf("alert before the burst is complete: %+v", got)
	}

	liveMu.Lock()
	live = []*scaleReplica{survivor}
	liveMu.Unlock()
	killed := time.Now()
	kill(victim)
	t.Logf("%s killed", victim.name)

	// After the kill: the rest of the burst, to the survivor.
	burst = append(burst, p.burst(t, survivor, "mallory", 16, 4)...)
	waitUntil(t, maxFailover+15*time.Second, "the victim's partition read by the survivor", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		at, ok := l.lastRead[victimPart][survivor.name]
		return ok && at.After(killed)
	})
	l.mu.Lock()
	took := l.gainedAt[survivor.name][victimPart].Sub(killed)
	l.mu.Unlock()
	t.Logf("failover: partition %d gained by %s %v after the kill", victimPart, survivor.name, took.Round(100*time.Millisecond))
	if took <= 0 || took > maxFailover {
		t.Errorf("failover took %v, want at most %v", took, maxFailover)
	}

	waitUntil(t, 40*time.Second, "the burst alert", func() bool { got, _ := l.alerts("forbidden-burst-user"); return len(got) > 0 })
	time.Sleep(2 * time.Second) // room for a duplicate to show
	stopSteady()
	<-steadyDone
	waitUntil(t, 40*time.Second, "every acknowledged event processed", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, id := range p.acked {
			if l.ackedBy(id) == "" {
				return false
			}
		}
		return true
	})
	got, by := l.alerts("forbidden-burst-user")
	if len(got) != 1 {
		t.Fatalf("the burst alerted %d times (by %v), want once", len(got), by)
	}
	// The alert fires as the 20th event counts, and names the last ones
	// counted: had an event counted twice, it would have fired before the
	// three held events came back.
	ids := slices.Clone(got[0].AuditIDs)
	slices.Sort(ids)
	distinct := slices.Compact(slices.Clone(ids))
	if got[0].Count != 20 || len(distinct) != len(ids) {
		t.Errorf("alert counts %d events, names %v; want 20, each once", got[0].Count, ids)
	}
	for _, id := range ids {
		if !slices.Contains(burst, id) {
			t.Errorf("alert names %s, not of the burst", id)
		}
	}
	for _, id := range burst[13:16] {
		if !slices.Contains(ids, id) {
			t.Errorf("alert names %v, without the held event %s", ids, id)
		}
	}
	if n := survivor.srv.m.fromSnapshot.Get(); n == 0 {
		t.Errorf("the survivor restored no partition from a saved state")
	}
	t.Logf("burst alerted once by %s; the %d acknowledged events all processed", by[0], len(p.acked))
}
