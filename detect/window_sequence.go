package detect

// sequenceWindow follows ordered steps for one key: it fires when the last
// step matches and every earlier step matched before it, in order, all
// within Within of the first.
type sequenceWindow struct {
	// starts[i] is the time of the first step of the chain that reached
	// step i (0: not reached).
	Starts []int64 `json:"starts,omitempty"`
	// ids are the auditIDs of the chain's steps.
	IDs           []string `json:"ids,omitempty"`
	Last          int64    `json:"last"`
	CooldownUntil int64    `json:"cooldownUntil,omitempty"`
}

func (w *sequenceWindow) add(m *windowMatch, spec *WindowSpec) (windowResult, bool) {
	n := len(spec.Steps)
	if w.Starts == nil {
		w.Starts = make([]int64, n)
	}
	w.Last = m.t
	if m.step == 0 {
		// The latest first step gives a later step the most time.
		w.Starts[0] = m.t
		w.IDs = append(w.IDs[:0], m.ev.AuditID)
		return windowResult{}, false
	}
	start := w.Starts[m.step-1]
	if start == 0 || m.t-start > int64(spec.Within) {
		return windowResult{}, false
	}
	w.Starts[m.step] = start
	if len(w.IDs) < maxSampleIDs {
		w.IDs = append(w.IDs, m.ev.AuditID)
	}
	if m.step < n-1 {
		return windowResult{}, false
	}
	ids := w.IDs
	clear(w.Starts)
	w.IDs = nil
	if m.t < w.CooldownUntil {
		return windowResult{}, false
	}
	w.CooldownUntil = m.t + int64(spec.Cooldown)
	return windowResult{count: n, first: unixUTC(start), last: unixUTC(m.t), auditIDs: ids}, true
}

func (w *sequenceWindow) idle(now int64, spec *WindowSpec) bool {
	return w.Last <= now-int64(spec.Within) && w.CooldownUntil <= now
}

func (w *sequenceWindow) lastSeen() int64 { return w.Last }
