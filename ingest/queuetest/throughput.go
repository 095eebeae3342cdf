package queuetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// Rate is what Throughput measured: events per second, and the process's
// CPU time per event consumed (publish and consume, and the server when it
// runs in the process). On a shared machine the rates vary with the load;
// the CPU time per event much less.
type Rate struct {
	Published, Consumed float64
	CPUPerEvent         time.Duration
}

func (r Rate) String() string {
	return fmt.Sprintf("published %.0f events/s, consumed %.0f events/s, %v CPU per event", r.Published, r.Consumed, r.CPUPerEvent)
}

// Throughput publishes audit events of about 1.1 KiB in batches of 400
// (the apiserver's webhook batch) from publishers goroutines, at rate
// events per second in all (0: as fast as the queue takes them), and reads
// and acknowledges them on one goroutine, for warmup and then d, and
// returns the rates over d. The events name 60 users, a few of which (the
// control plane's) send most, as in a real cluster.
func Throughput(t *testing.T, q ingest.Queue, publishers, rate int, warmup, d time.Duration) Rate {
	t.Helper()
	var published, consumed atomic.Int64
	var measuring atomic.Bool
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			gen := newEventGen(uint64(p))
			var every time.Duration
			if rate > 0 {
				every = time.Duration(float64(time.Second) * 400 * float64(publishers) / float64(rate))
			}
			next := time.Now()
			for ctx.Err() == nil {
				if every > 0 {
					next = next.Add(every)
					time.Sleep(time.Until(next))
				}
				batch := gen.batch(400)
				err := q.Publish(ctx, batch)
				switch {
				case err == nil:
					if measuring.Load() {
						published.Add(int64(len(batch)))
					}
				case errors.Is(err, ingest.ErrFull):
					time.Sleep(5 * time.Millisecond)
				case ctx.Err() == nil:
					t.Errorf("publish: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for ctx.Err() == nil {
			b, err := q.Read(ctx)
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("read: %v", err)
				}
				return
			}
			if measuring.Load() {
				consumed.Add(int64(len(b.Records)))
			}
			if err := b.Ack(ctx, nil); err != nil && ctx.Err() == nil {
				t.Errorf("ack: %v", err)
				return
			}
		}
	})
	time.Sleep(warmup)
	measuring.Store(true)
	start, cpu := time.Now(), cpuTime()
	time.Sleep(d)
	secs, cpu := time.Since(start).Seconds(), cpuTime()-cpu
	r := Rate{Published: float64(published.Load()) / secs, Consumed: float64(consumed.Load()) / secs}
	if n := consumed.Load(); n > 0 {
		r.CPUPerEvent = cpu / time.Duration(n)
	}
	cancel()
	wg.Wait()
	return r
}

// eventGen makes audit events.
type eventGen struct {
	rng *rand.Rand
	n   int
	buf bytes.Buffer
}

func newEventGen(seed uint64) *eventGen { return &eventGen{rng: rand.New(rand.NewPCG(seed, 42))} }

var genUsers = func() []string {
	u := []string{"system:kube-controller-manager", "system:kube-scheduler", "system:apiserver",
		"system:serviceaccount:kube-system:coredns", "system:node:node-1", "system:node:node-2"}
	for i := range 54 {
		u = append(u, fmt.Sprintf("user-%02d@example.com", i))
	}
	return u
}()

// batch is n events of one cluster, as one apiserver sends them.
func (g *eventGen) batch(n int) []ingest.Entry {
	cluster := fmt.Sprint("cluster-", g.rng.IntN(20))
	out := make([]ingest.Entry, n)
	for i := range out {
		g.n++
		// Half the events come from the six control-plane identities.
		u := genUsers[g.rng.IntN(6)]
		if g.rng.IntN(2) == 0 {
			u = genUsers[g.rng.IntN(len(genUsers))]
		}
		id := fmt.Sprintf("%08x-%04x-4b7c-9672-%012x", g.rng.Uint32(), g.n&0xffff, g.rng.Uint64()&0xffffffffffff)
		g.buf.Reset()
		fmt.Fprintf(&g.buf, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":"ResponseComplete",`+
			`"requestURI":"/api/v1/namespaces/team-a/configmaps/app-config-%d?timeout=8s","verb":"get",`+
			`"user":{"username":%q,"groups":["developers","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=9be8aa246cb4c9e6cf3a4d5b60920d81d21ee5c8952422c64b4088594a0ab578"]}},`+
			`"sourceIPs":["10.0.3.%d"],"userAgent":"kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0",`+
			`"objectRef":{"resource":"configmaps","namespace":"team-a","name":"app-config-%d","apiVersion":"v1"},`+
			`"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-05-01T10:00:00.%06dZ",`+
			`"stageTimestamp":"2026-05-01T10:00:00.%06dZ","annotations":{"authorization.k8s.io/decision":"allow",`+
			`"authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"dev-read/team-a\" of Role \"config-reader\" to Group \"developers\""}}`,
			id, g.n%500, u, g.n%250, g.n%500, g.n%1000000, (g.n+1)%1000000)
		out[i] = ingest.Entry{Key: ingest.DedupKey(id, "ResponseComplete"),
			Record: ingest.Record{Data: bytes.Clone(g.buf.Bytes()), Cluster: cluster}}
	}
	return out
}
