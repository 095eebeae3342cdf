package pipeline

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	vm "github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/ingest"
)

// cgroupShare is the part of a container's memory limit that serve takes
// as its own limit when none is configured: the rest is for what the Go
// runtime does not count (the kernel's buffers, the embedded queue's files).
const cgroupShare = 0.9

// shedAt is the part of the limit that the live heap (as the last
// collection found it) may reach before Publish refuses new events: past
// it the collector runs all the time, and more input would end with the
// process killed. The heap in use is not the measure: between collections
// it holds garbage up to the limit by design.
const shedAt = 0.8

// cgroupFiles are where a container's memory limit is read: cgroup v2,
// then v1.
var cgroupFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// ResolveMemoryLimit returns the memory limit serve keeps to: limit when
// positive, none when negative, and when zero 90% of the container's
// memory limit if there is one (cgroup v2 or v1), else none (0).
func ResolveMemoryLimit(limit int64) int64 {
	switch {
	case limit > 0:
		return limit
	case limit < 0:
		return 0
	}
	for _, f := range cgroupFiles {
		if n := readCgroupLimit(f); n > 0 {
			return int64(float64(n) * cgroupShare)
		}
	}
	return 0
}

// readCgroupLimit reads a cgroup memory limit file: 0 when it is missing,
// says "max", or holds v1's "no limit" (a value near the largest int64).
func readCgroupLimit(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n > 1<<60 {
		return 0
	}
	return n
}

// memoryGuard sheds load while the live heap is near the limit: Publish
// then returns an error wrapping ingest.ErrFull, which the webhook answers
// with 429 so that the apiserver retries later.
type memoryGuard struct {
	limit      int64
	shedding   atomic.Bool
	heap, live atomic.Uint64
	shed       *vm.Counter
}

func newMemoryGuard(limit int64, set *vm.Set) *memoryGuard {
	g := &memoryGuard{limit: limit, shed: set.NewCounter("vigil_serve_memory_shed_total")}
	set.NewGauge("vigil_serve_memory_limit_bytes", func() float64 { return float64(limit) })
	set.NewGauge("vigil_serve_heap_inuse_bytes", func() float64 { return float64(g.heap.Load()) })
	set.NewGauge("vigil_serve_heap_live_bytes", func() float64 { return float64(g.live.Load()) })
	set.NewGauge("vigil_serve_memory_shedding", func() float64 {
		if g.shedding.Load() {
			return 1
		}
		return 0
	})
	g.check()
	return g
}

// check reads the heap and decides whether to shed.
func (g *memoryGuard) check() {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	live := s[1].Value.Uint64()
	g.heap.Store(s[0].Value.Uint64())
	g.live.Store(live)
	g.shedding.Store(g.limit > 0 && float64(live) > float64(g.limit)*shedAt)
}

// run sets the runtime's soft memory limit, so that the collector works
// harder as the heap nears it, and checks the heap until ctx is done; the
// runtime's previous limit is put back then.
func (g *memoryGuard) run(ctx context.Context) {
	if g.limit > 0 {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(g.limit))
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.check()
		}
	}
}

// guardedPublisher is the queue as the webhook and the sources see it: it
// refuses events while memory is short.
type guardedPublisher struct {
	Publisher
	g *memoryGuard
}

func (p guardedPublisher) Publish(ctx context.Context, entries []ingest.Entry) error {
	if p.g.shedding.Load() {
		p.g.shed.Inc()
		return fmt.Errorf("live heap %d bytes is over %.0f%% of the memory limit of %d bytes: %w",
			p.g.live.Load(), shedAt*100, p.g.limit, ingest.ErrFull)
	}
	return p.Publisher.Publish(ctx, entries)
}
