package detect

import (
	"container/heap"
	"slices"
	"sort"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// Bounds on what one window key keeps, so an alert stays readable and a key
// stays small whatever the traffic.
const (
	maxSampleIDs      = 10
	maxDistinctValues = 1000
	maxAlertDistinct  = 50
)

// windowMatch is a match of a stateful rule on its way to the shard that
// owns its key.
type windowMatch struct {
	rule *Rule
	ev   *ingest.Event // owned copy: the event that may complete the window
	t    int64         // event time, unix nanoseconds
	seq  uint64        // input position, for a total order among equal times
	key  string
	// step is the sequence step (-1 for other kinds); value is the distinct
	// value.
	step  int
	value string
}

// window is the state of one (rule, key): one small type per kind
// (window_threshold.go, window_distinct.go, window_sequence.go).
type window interface {
	// add applies a match released in event-time order and reports
	// whether the rule fires, with what the alert carries.
	add(m *windowMatch, spec *WindowSpec) (windowResult, bool)
	// idle reports whether nothing in the window can matter any more at
	// event time now: no match within the window, no running cooldown.
	idle(now int64, spec *WindowSpec) bool
	// lastSeen is the time of the newest match, for eviction.
	lastSeen() int64
}

func newWindow(kind WindowKind) window {
	switch kind {
	case WindowThreshold:
		return &thresholdWindow{}
	case WindowDistinct:
		return &distinctWindow{}
	case WindowSequence:
		return &sequenceWindow{}
	}
	panic("BUG: unknown window kind " + string(kind))
}

// firedAlert is a window alert with the request that completed it.
type firedAlert struct {
	Alert
	trigger  string
	sequence bool
}

// pendingHeap orders buffered matches by (time, input position, step desc):
// a later step of the same event is processed first so one event does not
// chain with itself.
type pendingHeap []*windowMatch

func (h pendingHeap) Len() int { return len(h) }
func (h pendingHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.t != b.t {
		return a.t < b.t
	}
	if a.seq != b.seq {
		return a.seq < b.seq
	}
	return a.step > b.step
}
func (h pendingHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pendingHeap) Push(x any)   { *h = append(*h, x.(*windowMatch)) }
func (h *pendingHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}

// shard owns the window state of the (rule, key) pairs that hash to it.
// Ownership invariant: a shard is touched by one goroutine at a time (the
// engine runs each shard in its own goroutine per batch and waits for all
// of them), so its maps need no lock.
type shard struct {
	lateness int64
	maxKeys  int
	maxPend  int
	pending  pendingHeap
	keys     map[*Rule]map[string]window
	alerts   []firedAlert
	// releasedTo is the time up to which matches were released; lastSweep
	// the release time of the last sweep of idle keys.
	releasedTo, lastSweep int64
	m                     *engineMetrics
}

func newShard(lateness time.Duration, maxKeys, maxPending int, m *engineMetrics) *shard {
	return &shard{lateness: int64(lateness), maxKeys: maxKeys, maxPend: maxPending,
		keys: map[*Rule]map[string]window{}, m: m}
}

// add buffers matches and releases, in event-time order, every match at or
// before watermark − lateness (all of them when flush is set). Past maxPend
// buffered matches the oldest are released early.
func (s *shard) add(ms []*windowMatch, watermark int64, flush bool) {
	for _, m := range ms {
		heap.Push(&s.pending, m)
	}
	cut := watermark - s.lateness
	for len(s.pending) > 0 {
		next := s.pending[0]
		if !flush && next.t > cut && len(s.pending) <= s.maxPend {
			break
		}
		heap.Pop(&s.pending)
		s.releasedTo = max(s.releasedTo, next.t)
		s.apply(next)
	}
	if flush || s.releasedTo-s.lastSweep > int64(time.Minute) {
		s.sweep()
		s.lastSweep = s.releasedTo
	}
}

// apply runs one released match through its rule's window.
func (s *shard) apply(m *windowMatch) {
	keys := s.keys[m.rule]
	if keys == nil {
		keys = map[string]window{}
		s.keys[m.rule] = keys
	}
	w := keys[m.key]
	if w == nil {
		if len(keys) >= s.maxKeys {
			s.evict(m.rule, keys)
		}
		w = newWindow(m.rule.Spec.Window.Kind)
		keys[m.key] = w
		s.m.windowKeys.Inc()
	}
	if res, fire := w.add(m, m.rule.Spec.Window); fire {
		res.key = m.key
		res.auditIDs = slices.Clone(res.auditIDs[:min(len(res.auditIDs), maxSampleIDs)])
		s.alerts = append(s.alerts, firedAlert{Alert: newAlert(m.rule, m.ev, res),
			trigger: m.ev.AuditID, sequence: m.rule.steps != nil})
	}
}

// sweep frees keys that are idle at the release point.
func (s *shard) sweep() {
	for r, keys := range s.keys {
		for key, w := range keys {
			if w.idle(s.releasedTo, r.Spec.Window) {
				delete(keys, key)
				s.m.windowKeys.Dec()
			}
		}
	}
}

// evict drops the idlest tenth of a rule's keys when it reached its bound.
func (s *shard) evict(r *Rule, keys map[string]window) {
	type kl struct {
		key  string
		last int64
	}
	all := make([]kl, 0, len(keys))
	for key, w := range keys {
		all = append(all, kl{key, w.lastSeen()})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].last != all[j].last {
			return all[i].last < all[j].last
		}
		return all[i].key < all[j].key
	})
	n := max(1, len(all)/10)
	for _, e := range all[:n] {
		delete(keys, e.key)
	}
	s.m.windowKeys.Add(float64(-n))
	s.m.evictions(r).Add(n)
}

func unixUTC(ns int64) time.Time { return time.Unix(0, ns).UTC() }
