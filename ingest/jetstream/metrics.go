package jetstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/ingest/internal/qmetrics"
)

// queueMetrics are every queue's metrics, the embedded queue's own, and
// its gauges by cluster.
type queueMetrics struct {
	*qmetrics.Metrics
	stalls, trimmed *metrics.Counter
	clusters        sync.Map // cluster name -> *clusterGauges
	now             func() time.Time
}

// clusterGauges hold a cluster's queue gauges: its events stored and not
// yet taken by Read (counted from this start of the process, never below
// zero), and the write time of the newest message taken (unix nanoseconds).
type clusterGauges struct {
	queued, taken atomic.Int64
}

// take records that Read took n events of a message written at written.
func (g *clusterGauges) take(n int64, written time.Time) {
	g.taken.Store(written.UnixNano())
	for {
		v := g.queued.Load()
		if g.queued.CompareAndSwap(v, max(v-n, 0)) {
			return
		}
	}
}

// lag is how far behind Read is: the time since the newest message it took
// was written, or zero when nothing is waiting. It grows while Read is
// stuck.
func (g *clusterGauges) lag(now time.Time) time.Duration {
	if g.queued.Load() == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, g.taken.Load()))
}

// init registers the queue's metrics in s; pending is the figure of
// vigil_queue_pending_bytes.
func (m *queueMetrics) init(s *metrics.Set, now func() time.Time, pending func() int64) {
	m.Metrics, m.now = qmetrics.New(s, now, pending), now
	m.stalls = s.NewCounter("vigil_queue_publish_stalls_total")
	m.trimmed = s.NewCounter("vigil_queue_trimmed_messages_total")
}

func (m *queueMetrics) cluster(name string) *clusterGauges {
	if g, ok := m.clusters.Load(name); ok {
		return g.(*clusterGauges)
	}
	fresh := &clusterGauges{}
	fresh.taken.Store(m.now().UnixNano()) // nothing taken yet: lag counts from now
	g, loaded := m.clusters.LoadOrStore(name, fresh)
	cg := g.(*clusterGauges)
	if !loaded {
		l := `{cluster="` + qmetrics.Label(name) + `"}`
		m.Set().GetOrCreateGauge("vigil_queue_queued_events"+l, func() float64 { return float64(cg.queued.Load()) })
		m.Set().GetOrCreateGauge("vigil_queue_lag_seconds"+l, func() float64 { return cg.lag(m.now()).Seconds() })
	}
	return cg
}
