package detect

import "sort"

// distinctWindow counts the distinct values of one key: it fires when Count
// of them were seen within Within.
type distinctWindow struct {
	// Values maps each value to the last time it was seen; Order lists the
	// matches oldest first, for expiry and the alert's auditIDs.
	Values        map[string]int64 `json:"values,omitempty"`
	Order         []distinctMatch  `json:"order,omitempty"`
	Last          int64            `json:"last"`
	CooldownUntil int64            `json:"cooldownUntil,omitempty"`
}

type distinctMatch struct {
	T  int64  `json:"t"`
	V  string `json:"v"`
	ID string `json:"id"`
}

// timedValue is a value (an auditID) seen at a time.
type timedValue struct {
	T int64  `json:"t"`
	V string `json:"v"`
}

func (w *distinctWindow) add(m *windowMatch, spec *WindowSpec) (windowResult, bool) {
	i := 0
	for i < len(w.Order) && w.Order[i].T <= m.t-int64(spec.Within) {
		if dm := w.Order[i]; w.Values[dm.V] == dm.T {
			delete(w.Values, dm.V)
		}
		i++
	}
	w.Order = w.Order[i:]
	w.Last = m.t
	if w.Values == nil {
		w.Values = map[string]int64{}
	}
	if _, seen := w.Values[m.value]; seen || len(w.Values) < maxDistinctValues {
		w.Values[m.value] = m.t
		w.Order = append(w.Order, distinctMatch{m.t, m.value, m.ev.AuditID})
		if len(w.Order) > 2*len(w.Values)+32 {
			w.compact()
		}
	}
	if len(w.Values) < spec.Count || m.t < w.CooldownUntil {
		return windowResult{}, false
	}
	vals := make([]string, 0, len(w.Values))
	for v := range w.Values {
		vals = append(vals, v)
	}
	sort.Strings(vals)
	ids := make([]string, 0, maxSampleIDs)
	for _, dm := range w.Order[:min(len(w.Order), maxSampleIDs)] {
		ids = append(ids, dm.ID)
	}
	res := windowResult{count: len(vals), first: unixUTC(w.Order[0].T), last: unixUTC(m.t),
		auditIDs: ids, distinct: vals[:min(len(vals), maxAlertDistinct)]}
	w.Values, w.Order = nil, nil
	w.CooldownUntil = m.t + int64(spec.Cooldown)
	return res, true
}

// compact drops the matches of values seen again later, so a key holds
// about one entry per value however often each repeats.
func (w *distinctWindow) compact() {
	kept := w.Order[:0]
	for _, dm := range w.Order {
		if w.Values[dm.V] == dm.T {
			kept = append(kept, dm)
		}
	}
	clear(w.Order[len(kept):])
	w.Order = kept
}

func (w *distinctWindow) idle(now int64, spec *WindowSpec) bool {
	return w.Last <= now-int64(spec.Within) && w.CooldownUntil <= now
}

func (w *distinctWindow) lastSeen() int64 { return w.Last }
