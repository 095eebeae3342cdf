package detect

import "sort"

// distinctWindow counts the distinct values of one key: it fires when Count
// of them were seen within Within.
type distinctWindow struct {
	// values maps each value to the last time it was seen; order lists
	// (time, value) oldest first, for expiry.
	Values map[string]int64 `json:"values,omitempty"`
	Order  []timedValue     `json:"order,omitempty"`
	// ids samples the auditIDs that brought new values.
	IDs           []string `json:"ids,omitempty"`
	Last          int64    `json:"last"`
	CooldownUntil int64    `json:"cooldownUntil,omitempty"`
}

// timedValue is a value (an auditID, a distinct value) seen at a time.
type timedValue struct {
	T int64  `json:"t"`
	V string `json:"v"`
}

func (w *distinctWindow) add(m *windowMatch, spec *WindowSpec) (windowResult, bool) {
	i := 0
	for i < len(w.Order) && w.Order[i].T <= m.t-int64(spec.Within) {
		if tv := w.Order[i]; w.Values[tv.V] == tv.T {
			delete(w.Values, tv.V)
		}
		i++
	}
	w.Order = w.Order[i:]
	w.Last = m.t
	if w.Values == nil {
		w.Values = map[string]int64{}
	}
	_, seen := w.Values[m.value]
	if seen || len(w.Values) < maxDistinctValues {
		if !seen && len(w.IDs) < maxSampleIDs {
			w.IDs = append(w.IDs, m.ev.AuditID)
		}
		w.Values[m.value] = m.t
		w.Order = append(w.Order, timedValue{m.t, m.value})
	}
	if len(w.Values) < spec.Count || m.t < w.CooldownUntil {
		return windowResult{}, false
	}
	vals := make([]string, 0, len(w.Values))
	for v := range w.Values {
		vals = append(vals, v)
	}
	sort.Strings(vals)
	res := windowResult{count: len(vals), first: unixUTC(w.Order[0].T), last: unixUTC(m.t),
		auditIDs: w.IDs, distinct: vals[:min(len(vals), maxAlertDistinct)]}
	w.Values, w.Order, w.IDs = nil, nil, nil
	w.CooldownUntil = m.t + int64(spec.Cooldown)
	return res, true
}

func (w *distinctWindow) idle(now int64, spec *WindowSpec) bool {
	return w.Last <= now-int64(spec.Within) && w.CooldownUntil <= now
}

func (w *distinctWindow) lastSeen() int64 { return w.Last }
