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
	rules    map[*Rule]*ruleState
	alerts   []Alert
	// releasedTo is the time up to which matches were released; lastSweep
	// the release time of the last sweep of idle keys.
	releasedTo, lastSweep int64
	m                     *engineMetrics
}

// ruleState is one rule's keys in one shard.
type ruleState struct {
	keys map[string]*keyState
}

// keyState is the window of one (rule, key). Times are unix nanoseconds.
type keyState struct {
	// times are the matches in the window (threshold), oldest first, and
	// ids their auditIDs; for distinct and sequence windows ids is a sample.
	times []int64
	ids   []string
	// values maps each distinct value to the last time it was seen; order
	// lists (time, value) oldest first for expiry.
	values map[string]int64
	order  []timedValue
	// starts[i] is the start time of the sequence chain that reached step
	// i (0: not reached).
	starts []int64
	// last is the time of the newest match; cooldownUntil suppresses firing.
	last, cooldownUntil int64
}

type timedValue struct {
	t int64
	v string
}

func newShard(lateness time.Duration, maxKeys, maxPending int, m *engineMetrics) *shard {
	return &shard{lateness: int64(lateness), maxKeys: maxKeys, maxPend: maxPending,
		rules: map[*Rule]*ruleState{}, m: m}
}

// add buffers matches and releases, in event-time order, every match at or
// before watermark − lateness. flush releases everything.
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
		if next.t > s.releasedTo {
			s.releasedTo = next.t
		}
		s.apply(next)
	}
}

func (s *shard) state(r *Rule) *ruleState {
	rs := s.rules[r]
	if rs == nil {
		rs = &ruleState{keys: map[string]*keyState{}}
		s.rules[r] = rs
	}
	return rs
}

// apply runs one released match through its rule's window.
func (s *shard) apply(m *windowMatch) {
	rs := s.state(m.rule)
	k := rs.keys[m.key]
	if k == nil {
		if len(rs.keys) >= s.maxKeys {
			s.evict(m.rule, rs)
		}
		k = &keyState{}
		rs.keys[m.key] = k
		s.m.windowKeys.Add(1)
	}
	w := m.rule.Spec.Window
	within := int64(w.Within)
	k.last = m.t
	switch w.Kind {
	case WindowThreshold:
		k.expireTimes(m.t - within)
		k.times = append(k.times, m.t)
		k.ids = append(k.ids, m.ev.AuditID)
		if len(k.times) >= w.Count && m.t >= k.cooldownUntil {
			s.fire(m, k, windowResult{key: m.key, count: len(k.times),
				first: time.Unix(0, k.times[0]).UTC(), last: time.Unix(0, m.t).UTC(), auditIDs: k.ids[:min(len(k.ids), maxSampleIDs)]})
			k.times, k.ids = nil, nil
		}
	case WindowDistinct:
		k.expireValues(m.t - within)
		if k.values == nil {
			k.values = map[string]int64{}
		}
		if _, seen := k.values[m.value]; seen || len(k.values) < maxDistinctValues {
			if !seen && len(k.ids) < maxSampleIDs {
				k.ids = append(k.ids, m.ev.AuditID)
			}
			k.values[m.value] = m.t
			k.order = append(k.order, timedValue{m.t, m.value})
		}
		if len(k.values) >= w.Count && m.t >= k.cooldownUntil {
			vals := make([]string, 0, len(k.values))
			for v := range k.values {
				vals = append(vals, v)
			}
			sort.Strings(vals)
			if len(vals) > maxAlertDistinct {
				vals = vals[:maxAlertDistinct]
			}
			s.fire(m, k, windowResult{key: m.key, count: len(k.values), first: time.Unix(0, k.order[0].t).UTC(),
				last: time.Unix(0, m.t).UTC(), auditIDs: k.ids, distinct: vals})
			k.values, k.order, k.ids = nil, nil, nil
		}
	case WindowSequence:
		n := len(w.Steps)
		if k.starts == nil {
			k.starts = make([]int64, n)
		}
		if m.step == 0 {
			k.starts[0] = m.t
			k.ids = append(k.ids[:0], m.ev.AuditID)
			return
		}
		start := k.starts[m.step-1]
		if start == 0 || m.t-start > within {
			return
		}
		k.starts[m.step] = start
		if len(k.ids) < maxSampleIDs {
			k.ids = append(k.ids, m.ev.AuditID)
		}
		if m.step == n-1 {
			if m.t >= k.cooldownUntil {
				s.fire(m, k, windowResult{key: m.key, count: n, first: time.Unix(0, start).UTC(),
					last: time.Unix(0, m.t).UTC(), auditIDs: k.ids})
			}
			clear(k.starts)
			k.ids = nil
		}
	}
}

func (s *shard) fire(m *windowMatch, k *keyState, w windowResult) {
	w.auditIDs = slices.Clone(w.auditIDs)
	k.cooldownUntil = m.t + int64(m.rule.Spec.Window.Cooldown)
	s.alerts = append(s.alerts, newAlert(m.rule, m.ev, w))
}

func (k *keyState) expireTimes(before int64) {
	i := 0
	for i < len(k.times) && k.times[i] <= before {
		i++
	}
	k.times, k.ids = k.times[i:], k.ids[i:]
}

func (k *keyState) expireValues(before int64) {
	i := 0
	for i < len(k.order) && k.order[i].t <= before {
		tv := k.order[i]
		if k.values[tv.v] == tv.t {
			delete(k.values, tv.v)
		}
		i++
	}
	k.order = k.order[i:]
}

// idle reports whether the key holds nothing that can still matter at
// time now: no match inside the window and no running cooldown.
func (k *keyState) idle(now, within int64) bool {
	return k.last <= now-within && k.cooldownUntil <= now
}

// sweep frees keys that are idle at the release point.
func (s *shard) sweep() {
	for r, rs := range s.rules {
		within := int64(r.Spec.Window.Within)
		for key, k := range rs.keys {
			if k.idle(s.releasedTo, within) {
				delete(rs.keys, key)
				s.m.windowKeys.Add(-1)
			}
		}
	}
}

// evict drops the idlest tenth of a rule's keys when it reached its bound.
func (s *shard) evict(r *Rule, rs *ruleState) {
	type kl struct {
		key  string
		last int64
	}
	all := make([]kl, 0, len(rs.keys))
	for key, k := range rs.keys {
		all = append(all, kl{key, k.last})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].last != all[j].last {
			return all[i].last < all[j].last
		}
		return all[i].key < all[j].key
	})
	n := max(1, len(all)/10)
	for _, e := range all[:n] {
		delete(rs.keys, e.key)
	}
	s.m.windowKeys.Add(float64(-n))
	s.m.evictions(r).Add(n)
}
