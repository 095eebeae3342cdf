package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/memqueue"
	"github.com/vigil-k8s/vigil/ingest/partition"
)

const testRules = `rules:
- id: secret-read
  title: A secret was read
  severity: medium
  audit: {level: Metadata}
  match: objectRef.resource == "secrets" && verb == "get"
  output: "{{ .user.username }} read {{ .objectRef.name }}"
- id: forbidden-burst
  title: Burst of forbidden requests
  severity: high
  audit: {level: Metadata}
  match: responseStatus.code == 403
  window: {kind: threshold, by: [user.username], within: 1m, count: 3, cooldown: 10m}
  output: "{{ .user.username }} got {{ .count }} forbidden answers"
`

func compileRules(t *testing.T) *detect.RuleSet {
	t.Helper()
	cat, err := detect.ParseRuleFile("test.yaml", []byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

var _ Queue = (*memqueue.Queue)(nil)

// recorder is the alert store of these tests: it keeps what it is given and
// writes the calls it gets into a log shared with the queue, so a test can
// check the order of shutdown.
type recorder struct {
	mu     sync.Mutex
	alerts []detect.Alert
	calls  *[]string
}

func (r *recorder) Dispatch(_ context.Context, as ...detect.Alert) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.alerts = append(r.alerts, as...)
	return nil
}

func (r *recorder) WaitDelivered(context.Context) error { r.log("alerts.WaitDelivered"); return nil }
func (r *recorder) Close(context.Context) error         { r.log("alerts.Close"); return nil }

func (r *recorder) log(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.calls = append(*r.calls, s)
}

func (r *recorder) rules() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, a := range r.alerts {
		out = append(out, a.Rule+" "+a.User.Username)
	}
	return out
}

// testQueue is the in-memory queue with the pipeline's extras; its Close
// is written to the shared log, and with scribble set its Ack overwrites
// the records it delivered, as a queue that reuses its buffers may.
type testQueue struct {
	*memqueue.Queue
	rec      *recorder
	scribble bool
}

func (q *testQueue) Drained(context.Context) (bool, error) { return q.Pending() == 0, nil }
func (q *testQueue) MaxRecordSize() int                    { return 4 << 20 }

func (q *testQueue) Close(ctx context.Context) error {
	q.rec.log("queue.Close")
	return q.Queue.Close(ctx)
}

func (q *testQueue) Read(ctx context.Context) (ingest.Batch, error) {
	b, err := q.Queue.Read(ctx)
	if err != nil || !q.scribble {
		return b, err
	}
	ack := b.Ack
	b.Ack = func(ctx context.Context, err error) error {
		for _, r := range b.Records {
			for i := range r.Data {
				r.Data[i] = 'x'
			}
		}
		return ack(ctx, err)
	}
	return b, nil
}

func event(id, user, verb, resource string, code int, at time.Time) string {
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":"ResponseComplete",`+
		`"requestURI":"/api/v1/namespaces/ns/%s/x","verb":%q,"user":{"username":%q},"sourceIPs":["10.0.0.1"],`+
		`"objectRef":{"resource":%q,"namespace":"ns","name":"x","apiVersion":"v1"},"responseStatus":{"code":%d},`+
		`"requestReceivedTimestamp":%q,"stageTimestamp":%q}`,
		id, resource, verb, user, resource, code, at.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
}

func eventList(events ...string) []byte {
	return []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(events, ",") + `]}`)
}

type harness struct {
	srv   *Server
	rec   *recorder
	q     *testQueue
	calls []string
}

func start(t *testing.T, scribble bool) *harness {
	t.Helper()
	return startWith(t, scribble, func(*Config) {})
}

// startWith starts a harness whose config set changes.
func startWith(t *testing.T, scribble bool, set func(*Config)) *harness {
	t.Helper()
	h := &harness{}
	h.rec = &recorder{calls: &h.calls}
	h.q = &testQueue{Queue: memqueue.New(memqueue.Options{}), rec: h.rec, scribble: scribble}
	cfg := Config{
		Rules: compileRules(t), Queue: h.q, Alerts: h.rec, DataDir: t.TempDir(),
		Listen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", DrainTimeout: 5 * time.Second,
	}
	set(&cfg)
	srv, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	return h
}

// run starts Run and waits until the pipeline is ready; stop cancels it
// and returns what Run returned.
func (h *harness) run(t *testing.T) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.Run(ctx) }()
	waitFor(t, "readiness", func() bool { return h.ready(time.Second) == nil })
	return func() error { cancel(); return <-done }
}

// ready asks /readyz once.
func (h *harness) ready(timeout time.Duration) error {
	client := &http.Client{Timeout: timeout}
	resp, err := client.Get("http://" + h.srv.OpsAddr().String() + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

func (h *harness) post(t *testing.T, body []byte) {
	t.Helper()
	resp, err := http.Post("http://"+h.srv.WebhookAddr().String()+"/audit", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST: %s", resp.Status)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRun_StoresAlertsBeforeClosingInOrder runs the pipeline and checks
// that the window alert is stored as soon as the event that completes the
// window is processed (no later event, no stop), and that at stop the alert
// store was waited for and closed before the queue it may depend on.
func TestRun_StoresAlertsBeforeClosingInOrder(t *testing.T) {
	h := start(t, false)
	stop := h.run(t)

	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	h.post(t, eventList(
		event("a1", "alice", "get", "secrets", 200, base),
		event("m1", "mallory", "list", "pods", 403, base.Add(time.Second)),
		event("m2", "mallory", "list", "pods", 403, base.Add(2*time.Second)),
		event("m3", "mallory", "list", "pods", 403, base.Add(3*time.Second)),
	))
	waitFor(t, "the single-event and the window alert", func() bool {
		got := h.rec.rules()
		return slices.Contains(got, "secret-read alice") && slices.Contains(got, "forbidden-burst mallory")
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{"alerts.WaitDelivered", "alerts.Close", "queue.Close"}
	if !slices.Equal(h.calls, want) {
		t.Errorf("shutdown calls = %v, want %v", h.calls, want)
	}
}

// TestProcess_EventTimeReadBeforeAck feeds batches through a queue that
// reuses record memory once a batch is acknowledged: the event-time clock
// must come from the records as they were.
func TestProcess_EventTimeReadBeforeAck(t *testing.T) {
	h := start(t, true)
	defer h.srv.Close()
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	last := base.Add(5 * time.Second)
	if err := h.q.Publish(context.Background(), []ingest.Entry{
		{Record: ingest.Record{Data: []byte(event("e1", "bob", "get", "pods", 200, base))}, Key: "e1"},
		{Record: ingest.Record{Data: []byte(event("e2", "bob", "get", "pods", 200, last))}, Key: "e2"},
	}); err != nil {
		t.Fatal(err)
	}
	b, err := h.q.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.process(context.Background(), partition.Batch{Batch: b, Partition: -1}); err != nil {
		t.Fatal(err)
	}
	if !h.srv.whole.clock.max.Equal(last) {
		t.Errorf("event clock = %v, want %v", h.srv.whole.clock.max, last)
	}
}

// TestReadyz_DoesNotWaitForDetection holds the engine as a slow batch
// would: the readiness probe must still answer at once.
func TestReadyz_DoesNotWaitForDetection(t *testing.T) {
	h := start(t, false)
	stop := h.run(t)
	defer stop()
	h.srv.engineMu.Lock()
	err := h.ready(time.Second)
	h.srv.engineMu.Unlock()
	if err != nil {
		t.Errorf("/readyz while detection is busy: %v", err)
	}
}

func TestNew_RefusesBadConfig(t *testing.T) {
	rec := &recorder{calls: new([]string)}
	q := &testQueue{Queue: memqueue.New(memqueue.Options{}), rec: rec}
	_, err := New(context.Background(), Config{Rules: compileRules(t), Queue: q, Alerts: rec, DataDir: t.TempDir(), Listen: "bad address"})
	var ce ConfigError
	if err == nil || !errors.As(err, &ce) {
		t.Fatalf("New with a bad address = %v, want a ConfigError", err)
	}
	if !slices.Equal(*rec.calls, []string{"alerts.Close", "queue.Close"}) {
		t.Errorf("a failed New closed %v, want the alert store and the queue", *rec.calls)
	}
}
