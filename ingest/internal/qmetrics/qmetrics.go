// Package qmetrics registers the metrics every queue has (ingest/jetstream,
// ingest/natsq, ingest/kafkaq), and those of partitions for the scale-out
// ones (docs/metrics.md).
package qmetrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Metrics are a queue's counters and gauges.
type Metrics struct {
	set *metrics.Set
	now func() time.Time

	Published, PublishedMsgs, Full   *metrics.Counter
	Read, Redelivered, Dead, Corrupt *metrics.Counter
	Gained, Lost                     *metrics.Counter
	DedupKeys, Owned                 *metrics.Gauge
	partitions                       sync.Map // int -> *Partition
	dedupHits                        sync.Map // cluster -> *metrics.Counter
}

// New registers every queue's metrics in s; pending is the figure of
// vigil_queue_pending_bytes.
func New(s *metrics.Set, now func() time.Time, pending func() int64) *Metrics {
	s.NewGauge("vigil_queue_pending_bytes", func() float64 { return float64(pending()) })
	return &Metrics{set: s, now: now,
		Published:     s.NewCounter("vigil_queue_published_records_total"),
		PublishedMsgs: s.NewCounter("vigil_queue_published_messages_total"),
		Full:          s.NewCounter("vigil_queue_full_refusals_total"),
		Read:          s.NewCounter("vigil_queue_read_records_total"),
		Redelivered:   s.NewCounter("vigil_queue_redelivered_messages_total"),
		Dead:          s.NewCounter("vigil_queue_deadletter_items_total"),
		Corrupt:       s.NewCounter("vigil_queue_corrupt_messages_total"),
		DedupKeys:     s.NewGauge("vigil_queue_dedup_keys", nil),
	}
}

// Partitioned registers the partition counters of a scale-out queue too.
func (m *Metrics) Partitioned() *Metrics {
	m.Gained = m.set.NewCounter("vigil_queue_partitions_gained_total")
	m.Lost = m.set.NewCounter("vigil_queue_partitions_lost_total")
	m.Owned = m.set.NewGauge("vigil_queue_partitions_owned", nil)
	return m
}

// Set is the set the metrics are registered in, for a queue's own.
func (m *Metrics) Set() *metrics.Set { return m.set }

// DedupHits is the counter of duplicates dropped for a cluster.
func (m *Metrics) DedupHits(cluster string) *metrics.Counter {
	if c, ok := m.dedupHits.Load(cluster); ok {
		return c.(*metrics.Counter)
	}
	c := m.set.GetOrCreateCounter(`vigil_queue_dedup_hits_total{cluster="` + Label(cluster) + `"}`)
	m.dedupHits.Store(cluster, c)
	return c
}

// Partition holds the gauges of one partition this replica reads: the
// messages waiting that it has not taken (as last sampled), and the write
// time of the newest message it took (unix nanoseconds).
type Partition struct {
	Pending, taken atomic.Int64
}

// Take records that a message written at written was taken.
func (g *Partition) Take(written time.Time) { g.taken.Store(written.UnixNano()) }

// lag is how far behind the reader of the partition is: zero when nothing
// waits, else the time since the newest message taken was written.
func (g *Partition) lag(now time.Time) time.Duration {
	if g.Pending.Load() == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, g.taken.Load()))
}

// Partition returns the gauges of partition p, registering them on first
// use.
func (m *Metrics) Partition(p int) *Partition {
	if g, ok := m.partitions.Load(p); ok {
		return g.(*Partition)
	}
	fresh := &Partition{}
	fresh.taken.Store(m.now().UnixNano())
	g, loaded := m.partitions.LoadOrStore(p, fresh)
	pg := g.(*Partition)
	if !loaded {
		l := `{partition="` + strconv.Itoa(p) + `"}`
		m.set.GetOrCreateGauge("vigil_queue_partition_pending_messages"+l, func() float64 { return float64(pg.Pending.Load()) })
		m.set.GetOrCreateGauge("vigil_queue_partition_lag_seconds"+l, func() float64 { return pg.lag(m.now()).Seconds() })
	}
	return pg
}

// Label makes s safe inside a quoted metric label value.
func Label(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c == '\n' {
			c = '_'
		}
		b = append(b, c)
	}
	return string(b)
}
