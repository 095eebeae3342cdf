package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest/internal/natstest"
	"github.com/vigil-k8s/vigil/ingest/jetstream"
	"github.com/vigil-k8s/vigil/ingest/kafkaq"
	"github.com/vigil-k8s/vigil/ingest/natsq"
	"github.com/vigil-k8s/vigil/ingest/partition"
	"github.com/vigil-k8s/vigil/internal/auditgen"
	"github.com/vigil-k8s/vigil/policies"
	"github.com/vigil-k8s/vigil/sinks"
)

// countedQueue counts the records detection acknowledged.
type countedQueue struct {
	scaleQueue
	n atomic.Int64
}

func (q *countedQueue) ReadPartition(ctx context.Context) (partition.Batch, error) {
	b, err := q.scaleQueue.ReadPartition(ctx)
	if err != nil || b.Ack == nil || b.Change != partition.Records {
		return b, err
	}
	n, ack := len(b.Records), b.Ack
	b.Ack = func(ctx context.Context, err error) error {
		aerr := ack(ctx, err)
		if err == nil && aerr == nil {
			q.n.Add(int64(n))
		}
		return aerr
	}
	return b, nil
}

// TestScaleOut_Throughput measures what replicas of the live path (the
// webhook, the queue, detection with the built-in rules, the durable alert
// store) process together, as fast as four clients posting EventLists of
// 400 generated events get them acknowledged, with one and with two
// replicas, on one NATS server (R1) and on Kafka (kfake). Everything runs
// in this process on this machine. It runs with VIGIL_SCALE_BENCH=1:
//
//	VIGIL_SCALE_BENCH=1 go test -run TestScaleOut_Throughput -v ./ingest/pipeline
func TestScaleOut_Throughput(t *testing.T) {
	if os.Getenv("VIGIL_SCALE_BENCH") == "" {
		t.Skip("set VIGIL_SCALE_BENCH=1 to measure")
	}
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("nats/%d", n), func(t *testing.T) {
			url := natstest.Server(t).ClientURL()
			measure(t, rs, n, func(name string) (replicaSetup, func()) {
				nc, err := nats.Connect(url)
				if err != nil {
					t.Fatal(err)
				}
				q, err := natsq.Open(t.Context(), natsq.Options{Conn: nc, Member: name, Replicas: 1})
				if err != nil {
					t.Fatal(err)
				}
				sent, err := q.SentSet(t.Context(), time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				snaps, err := q.Snapshots(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				js, _ := natsjs.New(nc)
				return replicaSetup{name: name, q: q, js: js, jsReplicas: 1, sent: sent, snapshots: snaps}, func() { nc.Close() }
			})
		})
		t.Run(fmt.Sprintf("kafka/%d", n), func(t *testing.T) {
			kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer kc.Close()
			measure(t, rs, n, func(name string) (replicaSetup, func()) {
				q, err := kafkaq.Open(t.Context(), kafkaq.Options{Brokers: kc.ListenAddrs(), Replication: 1})
				if err != nil {
					t.Fatal(err)
				}
				sent, err := q.SentSet(t.Context(), time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				snaps, err := q.Snapshots(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				store, err := jetstream.Open(t.Context(), jetstream.Options{Dir: filepath.Join(t.TempDir(), "alerts")})
				if err != nil {
					t.Fatal(err)
				}
				return replicaSetup{name: name, q: q, js: store.JetStream(), jsReplicas: 1, sent: sent, snapshots: snaps},
					func() { store.Close(context.Background()) }
			})
		})
	}
}

// measure runs n replicas made by open under load for a warm-up and then
// 20s, and reports the events processed per second, in all and per
// replica.
func measure(t *testing.T, rs *detect.RuleSet, n int, open func(name string) (replicaSetup, func())) {
	const clients, perPost = 4, 400
	type running struct {
		srv    *Server
		q      *countedQueue
		cancel context.CancelFunc
		done   chan error
	}
	var reps []*running
	for i := range n {
		s, closeFn := open(fmt.Sprint("vigil-", i))
		dir := t.TempDir()
		disp, err := sinks.Build(t.Context(), sinks.Config{Sinks: []sinks.SinkConfig{sinks.FileSink("out", filepath.Join(dir, "alerts.jsonl"))}},
			sinks.WithDurable(s.js, sinks.DurableOptions{Replicas: s.jsReplicas}))
		if err != nil {
			t.Fatal(err)
		}
		r := &running{q: &countedQueue{scaleQueue: s.q}, done: make(chan error, 1)}
		if r.srv, err = New(t.Context(), Config{Rules: rs, Queue: r.q, Alerts: disp, SentSet: s.sent, Snapshots: s.snapshots,
			DataDir: dir, Listen: "127.0.0.1:0"}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		go func() { r.done <- r.srv.Run(ctx) }()
		defer func() { r.cancel(); <-r.done; closeFn() }()
		reps = append(reps, r)
	}
	for _, r := range reps {
		waitUntil(t, 30*time.Second, "readiness", func() bool { return r.srv.recv.Ready() })
	}
	pool := auditgen.Events(auditgen.Options{Seed: 7, Start: time.Now(), Rate: 20000}, 20000)
	var ids atomic.Int64
	ctx, stop := context.WithCancel(t.Context())
	var load sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	for c := range clients {
		load.Go(func() {
			var body []byte
			for i := c; ctx.Err() == nil; i += clients {
				body = append(body[:0], `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[`...)
				for j := range perPost {
					if j > 0 {
						body = append(body, ',')
					}
					body = withAuditID(body, pool[(i*perPost+j)%len(pool)], ids.Add(1))
				}
				body = append(body, "]}"...)
				resp, err := client.Post("http://"+reps[i%n].srv.WebhookAddr().String()+"/audit", "application/json", bytes.NewReader(body))
				if err == nil {
					resp.Body.Close()
				}
				if err == nil && resp.StatusCode == http.StatusTooManyRequests {
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	defer func() { stop(); load.Wait() }()
	time.Sleep(10 * time.Second)
	start := time.Now()
	before := make([]int64, n)
	for i, r := range reps {
		before[i] = r.q.n.Load()
	}
	time.Sleep(20 * time.Second)
	took := time.Since(start).Seconds()
	var total float64
	var per []string
	for i, r := range reps {
		rate := float64(r.q.n.Load()-before[i]) / took
		total += rate
		per = append(per, fmt.Sprintf("%.0f", rate))
	}
	t.Logf("%d replica(s): %.0f events/s processed (per replica %v), %d events posted", n, total, per, ids.Load())
}
