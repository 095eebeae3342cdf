package natsq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/natstest"
	"github.com/vigil-k8s/vigil/ingest/partition"
)

// member is a replica that reads and records what it gets.
type member struct {
	q      *Queue
	cancel context.CancelFunc
	done   chan struct{}
}

// reading is the record of all members' reads.
type reading struct {
	mu sync.Mutex
	// last is when a member last got records of a partition.
	last map[int]map[string]time.Time
	ids  map[string]bool
}

func (r *reading) note(name string, b partition.Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last[b.Partition] == nil {
		r.last[b.Partition] = map[string]time.Time{}
	}
	r.last[b.Partition][name] = time.Now()
	for _, rec := range b.Records {
		r.ids[string(rec.Data)] = true
	}
}

// owners is which member got the newest records of each partition.
func (r *reading) owners() map[int]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[int]string{}
	for p, byMember := range r.last {
		var newest time.Time
		for m, at := range byMember {
			if at.After(newest) {
				newest, out[p] = at, m
			}
		}
	}
	return out
}

func startMember(t *testing.T, url, name string, opts func(*Options), r *reading) *member {
	t.Helper()
	o := Options{URL: url, Member: name, Partitions: 6, Replicas: 3}
	opts(&o)
	q, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{q: q, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			b, err := q.ReadPartition(ctx)
			if err != nil {
				return
			}
			if b.Change != partition.Records {
				if b.Ack != nil {
					b.Ack(ctx, nil) // a hand-over: nothing to save here
				}
				continue
			}
			r.note(name, b)
			b.Ack(ctx, nil)
		}
	}()
	return m
}

// TestCluster_Failover runs three replicas on a three-node cluster with
// R3 streams, kills one replica together with its server, and measures how
// long its partitions take to reach the others. Nothing published and
// acknowledged is lost: what the dead replica held comes back after
// AckWait.
func TestCluster_Failover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	start := time.Now()
	nodes := natstest.Cluster(t, 3)
	t.Logf("three-node cluster ready in %v", time.Since(start).Round(time.Millisecond))
	r := &reading{last: map[int]map[string]time.Time{}, ids: map[string]bool{}}
	// Defaults for what failover depends on, but a shorter AckWait so the
	// test does not wait 30s for the redelivery of what the dead replica
	// held.
	opts := func(o *Options) { o.AckWait = 12 * time.Second }
	members := map[string]*member{}
	for i, ns := range nodes {
		name := fmt.Sprint("vigil-", i)
		members[name] = startMember(t, ns.ClientURL(), name, opts, r)
	}
	defer func() {
		for _, m := range members {
			m.cancel()
			m.q.Close(context.Background())
		}
	}()

	// One publisher on a surviving node, as the webhook of any replica.
	pub := members["vigil-0"].q
	var (
		pmu   sync.Mutex
		acked []string
	)
	pubCtx, stopPub := context.WithCancel(t.Context())
	defer stopPub()
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; pubCtx.Err() == nil; i++ {
			var batch []ingest.Entry
			for u := range 40 {
				batch = append(batch, event(fmt.Sprint("user-", u), i))
			}
			ctx, cancel := context.WithTimeout(pubCtx, 5*time.Second)
			err := pub.Publish(ctx, batch)
			cancel()
			if err == nil {
				pmu.Lock()
				for _, e := range batch {
					acked = append(acked, string(e.Data))
				}
				pmu.Unlock()
			} else if !errors.Is(err, context.Canceled) {
				t.Logf("publish (retried): %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	// Every partition read, by all three replicas between them.
	waitFor(t, 15*time.Second, "every partition read by one of three replicas", func() bool {
		o := r.owners()
		seen := map[string]bool{}
		for _, m := range o {
			seen[m] = true
		}
		return len(o) == 6 && len(seen) == 3
	})
	var dead []int
	for p, m := range r.owners() {
		if m == "vigil-2" {
			dead = append(dead, p)
		}
	}
	// Kill: the replica stops and its server with it, without a goodbye.
	victim := members["vigil-2"]
	victim.cancel()
	victim.q.nc.Close()
	victim.q.pubNC.Close()
	nodes[2].Shutdown()
	killed := time.Now()
	waitFor(t, 30*time.Second, "the dead replica's partitions read by the others", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range dead {
			moved := false
			for m, at := range r.last[p] {
				if m != "vigil-2" && at.After(killed) {
					moved = true
				}
			}
			if !moved {
				return false
			}
		}
		return true
	})
	t.Logf("partitions %v of the dead replica moved in %v (PinnedTTL %v, discovery every %v)",
		dead, time.Since(killed).Round(100*time.Millisecond), DefaultPinnedTTL, DefaultDiscoveryInterval)

	time.Sleep(time.Second)
	stopPub()
	<-pubDone
	pmu.Lock()
	want := acked
	pmu.Unlock()
	waitFor(t, 25*time.Second, "every acknowledged event read", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, id := range want {
			if !r.ids[id] {
				return false
			}
		}
		return true
	})
	t.Logf("all %d acknowledged events read %v after the kill", len(want), time.Since(killed).Round(100*time.Millisecond))
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

// TestMembers_ShareAndLeave runs two replicas on one server: they share
// the partitions, and when one stops gracefully the other takes them all.
func TestMembers_ShareAndLeave(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	r := &reading{last: map[int]map[string]time.Time{}, ids: map[string]bool{}}
	opts := func(o *Options) { o.Replicas, o.Partitions = 1, 8 }
	a := startMember(t, url, "vigil-0", opts, r)
	defer func() { a.cancel(); a.q.Close(context.Background()) }()
	b := startMember(t, url, "vigil-1", opts, r)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			var batch []ingest.Entry
			for u := range 32 {
				batch = append(batch, event(fmt.Sprint("user-", u), i))
			}
			a.q.Publish(ctx, batch)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	waitFor(t, 15*time.Second, "the partitions shared by two replicas", func() bool {
		oa, ob := a.q.Owned(), b.q.Owned()
		return len(oa) > 0 && len(ob) > 0 && len(oa)+len(ob) == 8
	})
	b.cancel()
	<-b.done
	left := time.Now()
	b.q.Close(t.Context())
	waitFor(t, 15*time.Second, "every partition with the remaining replica", func() bool { return len(a.q.Owned()) == 8 })
	t.Logf("partitions moved %v after a graceful stop (discovery every %v)", time.Since(left).Round(100*time.Millisecond), DefaultDiscoveryInterval)
}
