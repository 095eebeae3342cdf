package detect

import "slices"

// distinctWindow counts the distinct values of one key: it fires when Count
// of them were seen within Within. Values are counted exactly, with the
// time each was last seen, up to the shard's exactness cap; past the cap a
// sketch estimates the count.
type distinctWindow struct {
	// Values are the values seen in the window, at most min(count, cap).
	Values []distinctValue `json:"values,omitempty"`
	// Last is the time of the newest match; Fired the time the window
	// last fired (0: never).
	Last   int64  `json:"last"`
	Fired  int64  `json:"fired,omitempty"`
	Sample sample `json:"sample,omitempty"`
	// Sketch counts the values once there are more than the cap.
	Sketch *sketch `json:"sketch,omitempty"`
}

// distinctValue is a value with the time it was last seen.
type distinctValue struct {
	T int64  `json:"t"`
	V string `json:"v"`
}

func (w *distinctWindow) add(m *windowMatch, s *shard) (windowResult, bool) {
	spec := m.rule.Spec.Window
	if w.Fired != 0 && m.t < w.Fired {
		return windowResult{}, false
	}
	within := int64(spec.Within)
	w.Last = max(w.Last, m.t)
	// Values a window with an accepted match can still hold: within the
	// window and the lateness before the newest match.
	w.expire(w.Last-within-s.lateness, spec)
	limit := min(max(2*spec.Count, 32), max(s.exact, 1))
	if spec.Count > limit {
		limit = max(s.exact, 1)
	}
	i := slices.IndexFunc(w.Values, func(v distinctValue) bool { return v.V == m.value })
	switch {
	case i >= 0:
		w.Values[i].T = max(w.Values[i].T, m.t)
	case len(w.Values) < limit:
		w.Values = append(w.Values, distinctValue{m.t, m.value})
	case spec.Count <= limit:
		// Full: the value seen longest ago matters least.
		old := 0
		for j, v := range w.Values {
			if v.T < w.Values[old].T {
				old = j
			}
		}
		if m.t > w.Values[old].T {
			w.Values[old] = distinctValue{m.t, m.value}
		}
	case w.Sketch == nil:
		w.Sketch = &sketch{}
		for _, v := range w.Values {
			w.Sketch.add(hashString(v.V), v.T, spec)
		}
	}
	if w.Sketch != nil {
		w.Sketch.add(hashString(m.value), m.t, spec)
	}
	w.Sample.add(m.t, m.id)
	// The windows that hold this match end at it or at a value seen less
	// than a window after it (late input); in order, only at it.
	end, n := m.t, w.count(m.t, m.value, within)
	for _, v := range w.Values {
		if n >= spec.Count {
			break
		}
		if v.T > m.t && v.T < m.t+within {
			if c := w.count(v.T, m.value, within); c > n {
				end, n = v.T, c
			}
		}
	}
	if w.Sketch != nil {
		n = max(n, w.Sketch.estimate(w.Last, spec))
	}
	if n < spec.Count || (w.Fired != 0 && end < w.Fired+int64(spec.Cooldown)) {
		return windowResult{}, false
	}
	first := end
	var vals []string
	for _, v := range w.Values {
		if v.T > end-within && v.T <= end || v.V == m.value {
			vals = append(vals, v.V)
			first = min(first, v.T, m.t)
		}
	}
	res := w.Sample.result(n, first, end)
	res.distinct = sortedValues(vals, maxAlertDistinct)
	// The window starts afresh after it fired.
	*w = distinctWindow{Last: w.Last, Fired: w.Last}
	return res, true
}

// count is the number of values seen in the window that ends at end; the
// value of the match at hand counts, it was seen within it.
func (w *distinctWindow) count(end int64, value string, within int64) int {
	n := 0
	for _, v := range w.Values {
		if v.T > end-within && v.T <= end || v.V == value {
			n++
		}
	}
	return n
}

// expire drops the values and sample entries at or before cut.
func (w *distinctWindow) expire(cut int64, spec *WindowSpec) {
	w.Values = slices.DeleteFunc(w.Values, func(v distinctValue) bool { return v.T <= cut })
	w.Sample.expire(cut)
	if w.Sketch != nil && w.Sketch.empty(w.Last, spec) {
		w.Sketch = nil
	}
}

func (w *distinctWindow) idle(horizon int64, spec *WindowSpec) bool {
	return w.Last <= horizon-int64(spec.Within) && (w.Fired == 0 || w.Fired+int64(spec.Cooldown) <= horizon)
}

func (w *distinctWindow) lastSeen() int64 { return w.Last }

// hashString is FNV-1a with a final mix: fixed, so that a sketch restored in
// another process goes on with the same hashes.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
