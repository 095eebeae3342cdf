package detect

import (
	"iter"
	"slices"
	"sort"
	"time"
)

// Bounds on what one window key keeps, so an alert stays readable and a key
// stays small whatever the traffic.
const (
	maxSampleIDs     = 10
	maxAlertDistinct = 50
	// DefaultDistinctExact is how many distinct values a key counts exactly
	// before a sketch takes over (Options.DistinctExact).
	DefaultDistinctExact = 1000
	// sweepEvery is how far event time moves between two sweeps of the
	// keys that nothing can matter to any more.
	sweepEvery = int64(time.Minute)
)

// windowMatch is a match of a stateful rule on its way to the shard that
// owns its key. It holds no event: an alert is built from the record again
// (rec) in the rare case a window fires.
type windowMatch struct {
	rule *Rule
	t    int64  // event time, unix nanoseconds
	seq  uint64 // input position, orders the alerts
	// wm is the watermark when the match was taken: sweeps and evictions
	// happen at the same matches whatever the batch size.
	wm  int64
	rec int32 // index of the record in its batch
	// step is the sequence step (-1 for other kinds); value is the
	// distinct value.
	step  int32
	key   string
	value string
	id    auditID
}

// window is the state of one (rule, key): one small type per kind
// (window_threshold.go, window_distinct.go, window_sequence.go).
type window interface {
	// add applies a match, in arrival order, and reports whether the rule
	// fires, with what the alert carries.
	add(m *windowMatch, s *shard) (windowResult, bool)
	// idle reports whether nothing in the key can matter any more to a
	// match at or after horizon (the oldest event time still accepted).
	idle(horizon int64, spec *WindowSpec) bool
	// lastSeen is the time of the newest match, for eviction.
	lastSeen() int64
}

// keyTable holds the keys of one rule in one shard. It is a map of the
// rule's concrete window type: a map of interfaces would take 8 more bytes
// a key.
type keyTable interface {
	get(key string) window
	// add makes the window of a new key.
	add(key string) window
	del(key string)
	size() int
	all() iter.Seq2[string, window]
}

type table[T any, P interface {
	*T
	window
}] map[string]P

func (t table[T, P]) get(key string) window {
	if w, ok := t[key]; ok {
		return w
	}
	return nil
}

func (t table[T, P]) add(key string) window {
	w := P(new(T))
	t[key] = w
	return w
}

func (t table[T, P]) del(key string) { delete(t, key) }
func (t table[T, P]) size() int      { return len(t) }

func (t table[T, P]) all() iter.Seq2[string, window] {
	return func(yield func(string, window) bool) {
		for k, w := range t {
			if !yield(k, w) {
				return
			}
		}
	}
}

// newTable makes the key table of a rule's window kind.
func newTable(r *Rule) keyTable {
	switch r.Spec.Window.Kind {
	case WindowThreshold:
		if r.Spec.Window.Count > exactThreshold {
			return table[bucketWindow, *bucketWindow]{}
		}
		return table[thresholdWindow, *thresholdWindow]{}
	case WindowDistinct:
		return table[distinctWindow, *distinctWindow]{}
	case WindowSequence:
		return table[sequenceWindow, *sequenceWindow]{}
	case WindowFirstSeen:
		return table[firstSeenWindow, *firstSeenWindow]{}
	}
	panic("BUG: unknown window kind " + string(r.Spec.Window.Kind))
}

// firedRef is a window that fired: the alert is built from record rec of
// the batch once every shard is done.
type firedRef struct {
	seq  uint64
	rec  int32
	rule *Rule
	res  windowResult
}

// evictRef records what a shard dropped at its bounds at a match.
type evictRef struct {
	seq  uint64
	wm   int64
	rec  int32
	rule *Rule
	n    evictCount
}

// evictCount is what was dropped: keys of a rule at max_keys_per_rule, or
// values of a first_seen key at its max_values.
type evictCount struct{ keys, values int }

// shard owns the window state of the (rule, key) pairs that hash to it.
// Ownership invariant: a shard is touched by one goroutine at a time (the
// engine runs each shard in its own goroutine per batch and waits for all
// of them), so its maps need no lock.
type shard struct {
	lateness int64
	maxKeys  int
	// exact is how many distinct values a key counts exactly.
	exact   int
	keys    map[*Rule]keyTable
	fired   []firedRef
	evicted []evictRef
	// swept is the watermark of the last sweep of idle keys.
	swept int64
	m     *engineMetrics
	// changes counts changes to first_seen baselines worth saving,
	// savedChanges their number at the last save; baseline holds the
	// metrics of first_seen rules (window_firstseen.go).
	changes, savedChanges uint64
	baseline              map[*Rule]*baselineMetrics
	// sweptBaselines is the watermark of the last sweep of first_seen keys.
	sweptBaselines int64
}

func newShard(lateness time.Duration, maxKeys, exact int, m *engineMetrics) *shard {
	return &shard{lateness: int64(lateness), maxKeys: maxKeys, exact: exact,
		keys: map[*Rule]keyTable{}, m: m}
}

// run applies matches in input order: each window decides on arrival.
func (s *shard) run(ms []windowMatch) {
	for i := range ms {
		m := &ms[i]
		if m.wm-s.swept >= sweepEvery {
			s.sweep(m.wm)
		}
		s.apply(m)
	}
}

// apply runs one match through its rule's window.
func (s *shard) apply(m *windowMatch) {
	keys := s.table(m.rule)
	w := keys.get(m.key)
	if w == nil {
		if keys.size() >= s.maxKeys {
			n := s.evict(m.rule, keys)
			s.evicted = append(s.evicted, evictRef{seq: m.seq, wm: m.wm, rec: m.rec, rule: m.rule, n: evictCount{keys: n}})
		}
		w = keys.add(m.key)
		s.m.keys(m.rule).Inc()
	}
	if res, fire := w.add(m, s); fire {
		res.key = m.key
		s.fired = append(s.fired, firedRef{seq: m.seq, rec: m.rec, rule: m.rule, res: res})
	}
}

// table returns the key table of rule r, made on first use.
func (s *shard) table(r *Rule) keyTable {
	t := s.keys[r]
	if t == nil {
		t = newTable(r)
		s.keys[r] = t
	}
	return t
}

// sweep frees the keys that nothing accepted from now on can matter to.
func (s *shard) sweep(watermark int64) {
	s.swept = watermark
	horizon := watermark - s.lateness
	// Baselines are kept for days: looking at them once an hour is enough.
	baselines := watermark-s.sweptBaselines >= baselineSweepEvery
	if baselines {
		s.sweptBaselines = watermark
	}
	for r, keys := range s.keys {
		if r.Spec.Window.Kind == WindowFirstSeen && !baselines {
			continue
		}
		for key, w := range keys.all() {
			if w.idle(horizon, r.Spec.Window) {
				s.forget(r, w)
				keys.del(key)
				s.m.keys(r).Dec()
			}
		}
	}
}

// evict drops the idlest tenth of a rule's keys when it reached its bound
// and returns how many.
func (s *shard) evict(r *Rule, keys keyTable) int {
	type kl struct {
		key  string
		last int64
	}
	all := make([]kl, 0, keys.size())
	for key, w := range keys.all() {
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
		s.forget(r, keys.get(e.key))
		keys.del(e.key)
	}
	s.m.keys(r).Add(float64(-n))
	s.m.evictions(r).Add(n)
	return n
}

// sampleEntry is one match kept for an alert's auditIDs.
type sampleEntry struct {
	T  int64   `json:"t"`
	ID auditID `json:"id"`
}

// sample keeps the newest maxSampleIDs matches of a window, oldest first:
// the alert's auditIDs.
type sample []sampleEntry

// add keeps the match if it is among the newest maxSampleIDs.
func (s *sample) add(t int64, id auditID) {
	x := *s
	n := len(x)
	if n == maxSampleIDs && t <= x[0].T {
		return
	}
	i := sort.Search(n, func(i int) bool { return x[i].T > t })
	if n == maxSampleIDs {
		// Make room by dropping the oldest.
		copy(x, x[1:i])
		x[i-1] = sampleEntry{t, id}
		return
	}
	if n == cap(x) {
		// Grow by hand: append's doubling would pass the bound.
		grown := make(sample, n, min(max(2*n, 1), maxSampleIDs))
		copy(grown, x)
		x = grown
	}
	x = x[:n+1]
	copy(x[i+1:], x[i:n])
	x[i] = sampleEntry{t, id}
	*s = x
}

// expire drops the matches at or before cut.
func (s *sample) expire(cut int64) {
	x := *s
	i := 0
	for i < len(x) && x[i].T <= cut {
		i++
	}
	if i > 0 {
		n := copy(x, x[i:])
		clear(x[n:])
		*s = x[:n]
	}
}

// result builds the alert's part for the window [first, last]: the
// auditIDs of the kept matches in it.
func (s sample) result(count int, first, last int64) windowResult {
	ids := make([]string, 0, len(s))
	for _, e := range s {
		if e.T >= first && e.T <= last {
			ids = append(ids, e.ID.String())
		}
	}
	return windowResult{count: count, first: unixUTC(first), last: unixUTC(last), auditIDs: ids}
}

// floorDiv divides rounding toward minus infinity, so that bucket indices
// stay ordered for any time.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// ringIndex is the position of bucket b in a ring of n.
func ringIndex(b int64, n int) int {
	i := b % int64(n)
	if i < 0 {
		i += int64(n)
	}
	return int(i)
}

func unixUTC(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// sortedValues returns at most n of vals, sorted.
func sortedValues(vals []string, n int) []string {
	slices.Sort(vals)
	return vals[:min(len(vals), n)]
}
