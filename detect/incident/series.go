package incident

import (
	"cmp"
	"slices"
	"time"
)

// steps a Series coarsens through, in seconds.
var seriesSteps = []int64{1, 60, 3600, 86400}

// Series counts things over time in bounded memory: in steps of a second,
// coarsened to a minute, an hour, then a day whenever it holds more than
// its bound of points. K tells apart what is counted (a severity).
type Series[K cmp.Ordered] struct {
	max    int
	step   int64
	counts map[seriesKey[K]]int
}

type seriesKey[K cmp.Ordered] struct {
	t int64
	k K
}

// Point is the count of K in the step starting at Time.
type Point[K cmp.Ordered] struct {
	Time time.Time `json:"time"`
	Key  K         `json:"key"`
	N    int       `json:"n"`
}

// NewSeries returns a Series that keeps at most max points (while steps
// of a day allow).
func NewSeries[K cmp.Ordered](max int) *Series[K] {
	return &Series[K]{max: max, step: 1, counts: map[seriesKey[K]]int{}}
}

// Add counts n of k at t.
func (s *Series[K]) Add(t time.Time, k K, n int) {
	u := t.Unix()
	s.counts[seriesKey[K]{u - mod(u, s.step), k}] += n
	if len(s.counts) > s.max {
		s.coarsen()
	}
}

// Merge adds the counts of o.
func (s *Series[K]) Merge(o *Series[K]) {
	for o.step > s.step {
		s.coarsen()
	}
	for key, n := range o.counts {
		key.t -= mod(key.t, s.step)
		s.counts[key] += n
	}
	for len(s.counts) > s.max && s.coarsen() {
	}
}

// coarsen moves to the next step; false when there is none.
func (s *Series[K]) coarsen() bool {
	i := slices.Index(seriesSteps, s.step)
	if i+1 == len(seriesSteps) {
		return false
	}
	s.step = seriesSteps[i+1]
	old := s.counts
	s.counts = make(map[seriesKey[K]]int, len(old))
	for key, n := range old {
		key.t -= mod(key.t, s.step)
		s.counts[key] += n
	}
	return true
}

// Step is the width of a point.
func (s *Series[K]) Step() time.Duration { return time.Duration(s.step) * time.Second }

// Points returns the counts in time order, then key order.
func (s *Series[K]) Points() []Point[K] {
	out := make([]Point[K], 0, len(s.counts))
	for key, n := range s.counts {
		out = append(out, Point[K]{Time: time.Unix(key.t, 0).UTC(), Key: key.k, N: n})
	}
	slices.SortFunc(out, func(a, b Point[K]) int { return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Key, b.Key)) })
	return out
}

// mod is the remainder that is never negative (times before 1970).
func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
