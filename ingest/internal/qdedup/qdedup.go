// Package qdedup is the de-duplication every queue applies to what it
// delivers: ingest.Dedup over the digests of the entries' keys, safe for a
// queue whose Ack runs on another goroutine than Read, with its metrics
// (vigil_queue_dedup_hits_total, vigil_queue_dedup_keys).
package qdedup

import (
	"sync"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/frames"
	"github.com/vigil-k8s/vigil/ingest/internal/qmetrics"
)

// Set holds the keys delivered within the window.
type Set struct {
	mu      sync.Mutex
	seen    *ingest.Dedup[ingest.Digest]
	digests ingest.Digester
	m       *qmetrics.Metrics
}

// New returns a Set of at most maxKeys keys over window.
func New(maxKeys int, window time.Duration, m *qmetrics.Metrics) *Set {
	return &Set{seen: ingest.NewDedup[ingest.Digest](maxKeys, window), digests: ingest.NewDigester(), m: m}
}

// Frames admits the entries of one message delivered at now: it appends
// those not delivered before to recs, and their digests to keys, and
// counts the others as duplicates of cluster.
func (s *Set) Frames(fs []frames.Frame, cluster, origin string, now time.Time, recs []ingest.Record, keys []ingest.Digest) ([]ingest.Record, []ingest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen.Advance(now)
	for _, f := range fs {
		k := s.digests.Digest(f.Key)
		if s.seen.Seen(k) {
			s.m.DedupHits(cluster).Inc()
			continue
		}
		recs = append(recs, ingest.Record{Data: f.Data, Cluster: cluster, Origin: origin})
		keys = append(keys, k)
	}
	s.m.DedupKeys.Set(float64(s.seen.Len()))
	return recs, keys
}

// Admit admits one entry's key delivered at now: false (counted for
// cluster) when it was delivered before.
func (s *Set) Admit(key []byte, cluster string, now time.Time) (ingest.Digest, bool) {
	k, dup := s.Seen(key, now)
	if dup {
		s.m.DedupHits(cluster).Inc()
	}
	s.m.DedupKeys.Set(float64(s.Len()))
	return k, !dup
}

// Seen records key as delivered at now, and reports whether it was
// already, without counting it (replays use it).
func (s *Set) Seen(key []byte, now time.Time) (ingest.Digest, bool) {
	k := s.digests.Digest(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen.Advance(now)
	return k, s.seen.Seen(k)
}

// Forget lets keys through again: their batch was not processed.
func (s *Set) Forget(keys []ingest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.seen.Forget(k)
	}
}

// Len is the number of keys held.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen.Len()
}
