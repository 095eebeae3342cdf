package detect

// thresholdWindow counts matches of one key: it fires when Count of them
// fall within Within. It is kept small (32 bytes plus 24 per match in the
// window): a busy cluster has a key per identity and source.
type thresholdWindow struct {
	// Matches are the matches in the window, oldest first.
	Matches []timedValue `json:"matches,omitempty"`
	// CooldownUntil suppresses firing after the window fired.
	CooldownUntil int64 `json:"cooldownUntil,omitempty"`
}

func (w *thresholdWindow) add(m *windowMatch, spec *WindowSpec) (windowResult, bool) {
	i := 0
	for i < len(w.Matches) && w.Matches[i].T <= m.t-int64(spec.Within) {
		i++
	}
	w.Matches = append(w.Matches[i:], timedValue{m.t, m.ev.AuditID})
	if len(w.Matches) < spec.Count || m.t < w.CooldownUntil {
		return windowResult{}, false
	}
	ids := make([]string, min(len(w.Matches), maxSampleIDs))
	for j := range ids {
		ids[j] = w.Matches[j].V
	}
	res := windowResult{count: len(w.Matches), first: unixUTC(w.Matches[0].T), last: unixUTC(m.t), auditIDs: ids}
	// The window starts afresh after it fired.
	w.Matches = nil
	w.CooldownUntil = m.t + int64(spec.Cooldown)
	return res, true
}

func (w *thresholdWindow) idle(now int64, spec *WindowSpec) bool {
	return w.lastSeen() <= now-int64(spec.Within) && w.CooldownUntil <= now
}

func (w *thresholdWindow) lastSeen() int64 {
	if n := len(w.Matches); n > 0 {
		return w.Matches[n-1].T
	}
	return w.CooldownUntil
}
