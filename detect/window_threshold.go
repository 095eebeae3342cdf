package detect

// Threshold windows keep match times up to a count of exactThreshold
// (exact); above it, counts in thresholdBuckets time buckets (a ring
// covering `within` in within/(thresholdBuckets-1) steps).
const (
	exactThreshold   = 64
	thresholdBuckets = 32
)

// bucketWindow counts the matches of one key in time buckets: it fires
// when Count of them fall within Within, measured to a bucket (see
// docs/rules.md). Its size does not depend on the traffic or the count.
type bucketWindow struct {
	// Counts is a ring of match counts per bucket; Head is the bucket index
	// (time / bucket width) of the newest bucket.
	Counts [thresholdBuckets]uint16 `json:"counts"`
	Head   int64                    `json:"head"`
	// Last is the time of the newest match; Fired the time the window
	// last fired (0: never): matches before it are not counted again, and
	// the key stays quiet for the cooldown after it.
	Last   int64  `json:"last"`
	Fired  int64  `json:"fired,omitempty"`
	Sample sample `json:"sample,omitempty"`
}

// bucketWidth is within/(n-1) rounded up: n buckets then cover a window
// whatever its alignment.
func bucketWidth(spec *WindowSpec, n int) int64 {
	w := int64(spec.Within)
	return max(1, (w+int64(n)-2)/int64(n-1))
}

func (w *bucketWindow) add(m *windowMatch, _ *shard) (windowResult, bool) {
	spec := m.rule.Spec.Window
	if w.Fired != 0 && m.t < w.Fired {
		// Counted in the window that fired, or older still.
		return windowResult{}, false
	}
	bw := bucketWidth(spec, thresholdBuckets)
	b := floorDiv(m.t, bw)
	if w.Last == 0 && w.Head == 0 {
		w.Head = b
	}
	if b > w.Head {
		if b-w.Head >= thresholdBuckets {
			clear(w.Counts[:])
		} else {
			for i := w.Head + 1; i <= b; i++ {
				w.Counts[ringIndex(i, thresholdBuckets)] = 0
			}
		}
		w.Head = b
	}
	lo := w.Head - thresholdBuckets + 1
	w.Sample.expire(lo*bw - 1)
	w.Last = max(w.Last, m.t)
	n := 1
	if b < lo {
		// Older than the ring (late input): the fullest window holding
		// it ends at b+thresholdBuckets-1; what it holds before lo is gone.
		for i := lo; i < b+thresholdBuckets; i++ {
			n += int(w.Counts[ringIndex(i, thresholdBuckets)])
		}
	} else {
		if c := &w.Counts[ringIndex(b, thresholdBuckets)]; *c < ^uint16(0) {
			*c++
		}
		w.Sample.add(m.t, m.id)
		// Every bucket of the ring is within the window that ends at the
		// newest one, and that window holds this match.
		n = 0
		for _, c := range w.Counts {
			n += int(c)
		}
	}
	if n < spec.Count || (w.Fired != 0 && w.Last < w.Fired+int64(spec.Cooldown)) {
		return windowResult{}, false
	}
	// The window began in its oldest bucket that holds a match: at the
	// match kept from it, or else at the bucket's start.
	first := w.Last
	for i := lo; i <= w.Head; i++ {
		if w.Counts[ringIndex(i, thresholdBuckets)] > 0 {
			first = i * bw
			if len(w.Sample) > 0 && floorDiv(w.Sample[0].T, bw) == i {
				first = w.Sample[0].T
			}
			break
		}
	}
	res := w.Sample.result(n, min(first, m.t), w.Last)
	// The window starts afresh after it fired.
	clear(w.Counts[:])
	clear(w.Sample)
	w.Sample = w.Sample[:0]
	w.Fired = w.Last
	return res, true
}

func (w *bucketWindow) idle(horizon int64, spec *WindowSpec) bool {
	span := bucketWidth(spec, thresholdBuckets) * thresholdBuckets
	return w.Last < horizon-span && (w.Fired == 0 || w.Fired+int64(spec.Cooldown) <= horizon)
}

func (w *bucketWindow) lastSeen() int64 { return w.Last }

// thresholdWindow keeps the times of one key's matches that a window can
// still need: those within Within of its newest match, and for late input
// the lateness before that, at most max(2·count, 32). It fires exactly when
// count matches fall within Within, whatever their arrival order within
// the lateness.
type thresholdWindow struct {
	// Times are match times, oldest first.
	Times []int64 `json:"times,omitempty"`
	// Last is the time of the newest match; Fired the time the window
	// last fired (0: never): matches before it are not counted again, and
	// the key stays quiet for the cooldown after it.
	Last   int64  `json:"last"`
	Fired  int64  `json:"fired,omitempty"`
	Sample sample `json:"sample,omitempty"`
}

func (w *thresholdWindow) add(m *windowMatch, s *shard) (windowResult, bool) {
	spec := m.rule.Spec.Window
	if w.Fired != 0 && m.t < w.Fired {
		return windowResult{}, false
	}
	within, n := int64(spec.Within), spec.Count
	w.Last = max(w.Last, m.t)
	// Drop what no window with an accepted match can hold any more.
	cut := w.Last - within - s.lateness
	i := 0
	for i < len(w.Times) && w.Times[i] <= cut {
		i++
	}
	if keep := max(2*n, 32); len(w.Times)-i >= keep {
		i = len(w.Times) - keep + 1
	}
	w.Times = w.Times[:copy(w.Times, w.Times[i:])]
	w.Sample.expire(cut)
	j := len(w.Times)
	for j > 0 && w.Times[j-1] > m.t {
		j--
	}
	if len(w.Times) == cap(w.Times) {
		// Grow by hand: append's doubling would overshoot the bound.
		grown := make([]int64, len(w.Times), min(max(2*len(w.Times), 2), max(2*n, 32)))
		copy(grown, w.Times)
		w.Times = grown
	}
	w.Times = w.Times[:len(w.Times)+1]
	copy(w.Times[j+1:], w.Times[j:])
	w.Times[j] = m.t
	w.Sample.add(m.t, m.id)
	// The earliest run of count matches within a window that holds this
	// one: in order, the run that ends with it.
	for k := max(0, j-n+1); k <= j && k+n <= len(w.Times); k++ {
		if w.Times[k+n-1]-w.Times[k] >= within {
			continue
		}
		if w.Fired != 0 && w.Times[k+n-1] < w.Fired+int64(spec.Cooldown) {
			return windowResult{}, false
		}
		first, end := w.Times[k], w.Times[k+n-1]
		count := n
		for l := k - 1; l >= 0 && w.Times[l] > end-within; l-- {
			count++
		}
		res := w.Sample.result(count, first, end)
		// The window starts afresh after it fired.
		w.Times = w.Times[:0]
		clear(w.Sample)
		w.Sample = w.Sample[:0]
		w.Fired = w.Last
		return res, true
	}
	return windowResult{}, false
}

func (w *thresholdWindow) idle(horizon int64, spec *WindowSpec) bool {
	return w.Last <= horizon-int64(spec.Within) && (w.Fired == 0 || w.Fired+int64(spec.Cooldown) <= horizon)
}

func (w *thresholdWindow) lastSeen() int64 { return w.Last }
