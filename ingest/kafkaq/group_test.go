package kafkaq

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/partition"
)

// reader reads a queue on its own goroutine and records what it gets.
type reader struct {
	mu      sync.Mutex
	ids     map[string]bool
	changes []partition.Batch
	stop    context.CancelFunc
	done    chan struct{}
}

func startReader(q *Queue) *reader {
	ctx, cancel := context.WithCancel(context.Background())
	r := &reader{ids: map[string]bool{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			b, err := q.ReadPartition(ctx)
			if err != nil {
				return
			}
			r.mu.Lock()
			if b.Change != partition.Records {
				r.changes = append(r.changes, b)
			}
			for _, rec := range b.Records {
				r.ids[string(rec.Data)] = true
			}
			r.mu.Unlock()
			if b.Ack != nil {
				b.Ack(ctx, nil)
			}
		}
	}()
	return r
}

func (r *reader) count(c partition.Change) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, b := range r.changes {
		if b.Change == c {
			n++
		}
	}
	return n
}

// TestGroup_ScaleOutAndIn starts one replica, adds a second, and removes
// it again: the partitions are shared and then all come back, each move
// announced on both sides, and every acknowledged event is read.
func TestGroup_ScaleOutAndIn(t *testing.T) {
	brokers := runKafka(t)
	a := open(t, brokers, nil)
	defer a.Close(context.Background())
	same := func(o *Options) { o.Topic, o.Group = a.opts.Topic, a.opts.Group }
	ra := startReader(a)
	defer func() { ra.stop(); <-ra.done }()

	var (
		pmu   sync.Mutex
		acked []string
	)
	ctx, stopPub := context.WithCancel(t.Context())
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; ctx.Err() == nil; i++ {
			var batch []ingest.Entry
			for u := range 16 {
				batch = append(batch, event(fmt.Sprint("user-", u), i))
			}
			if a.Publish(ctx, batch) == nil {
				pmu.Lock()
				for _, e := range batch {
					acked = append(acked, string(e.Data))
				}
				pmu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	waitFor(t, 10*time.Second, "the first replica owning all 4 partitions", func() bool { return len(a.Owned()) == 4 })

	b := open(t, brokers, same)
	rb := startReader(b)
	joined := time.Now()
	waitFor(t, 20*time.Second, "the partitions shared by two replicas", func() bool {
		oa, ob := a.Owned(), b.Owned()
		return len(oa) > 0 && len(ob) > 0 && len(oa)+len(ob) == 4 && !slices.ContainsFunc(oa, func(p int) bool { return slices.Contains(ob, p) })
	})
	t.Logf("second replica took %v in %v", b.Owned(), time.Since(joined).Round(10*time.Millisecond))
	waitFor(t, 5*time.Second, "the move announced on both sides", func() bool {
		return ra.count(partition.Lost) == len(b.Owned()) && rb.count(partition.Gained) == len(b.Owned())
	})

	rb.stop()
	<-rb.done
	left := time.Now()
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "all partitions back with the first replica", func() bool { return len(a.Owned()) == 4 })
	t.Logf("partitions back in %v after the second replica left", time.Since(left).Round(10*time.Millisecond))

	time.Sleep(500 * time.Millisecond)
	stopPub()
	<-pubDone
	pmu.Lock()
	want := acked
	pmu.Unlock()
	waitFor(t, 20*time.Second, "every acknowledged event read", func() bool {
		ra.mu.Lock()
		rb.mu.Lock()
		defer ra.mu.Unlock()
		defer rb.mu.Unlock()
		for _, id := range want {
			if !ra.ids[id] && !rb.ids[id] {
				return false
			}
		}
		return true
	})
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
