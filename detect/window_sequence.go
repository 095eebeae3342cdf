package detect

import "slices"

// sequenceWindow follows ordered steps for one key: it fires when the last
// step matches and every earlier step matched before it, in order, all
// within Within of the first.
type sequenceWindow struct {
	// Starts[i] is the time of the first step of the chain that reached
	// step i (0: not reached), and Chains[i] that chain's auditIDs.
	Starts        []int64    `json:"starts,omitempty"`
	Chains        [][]string `json:"chains,omitempty"`
	Last          int64      `json:"last"`
	CooldownUntil int64      `json:"cooldownUntil,omitempty"`
}

func (w *sequenceWindow) add(m *windowMatch, spec *WindowSpec) (windowResult, bool) {
	n := len(spec.Steps)
	if m.step < 0 || m.step >= n {
		return windowResult{}, false
	}
	if len(w.Starts) != n || len(w.Chains) != n {
		w.Starts, w.Chains = make([]int64, n), make([][]string, n)
	}
	w.Last = m.t
	if m.step == 0 {
		// The latest first step gives a later step the most time.
		w.Starts[0], w.Chains[0] = m.t, []string{m.ev.AuditID}
		return windowResult{}, false
	}
	start := w.Starts[m.step-1]
	if start == 0 || m.t-start > int64(spec.Within) {
		return windowResult{}, false
	}
	chain := append(slices.Clone(w.Chains[m.step-1]), m.ev.AuditID)
	if m.step < n-1 {
		w.Starts[m.step], w.Chains[m.step] = start, chain
		return windowResult{}, false
	}
	clear(w.Starts)
	clear(w.Chains)
	if m.t < w.CooldownUntil {
		return windowResult{}, false
	}
	w.CooldownUntil = m.t + int64(spec.Cooldown)
	return windowResult{count: n, first: unixUTC(start), last: unixUTC(m.t), auditIDs: chain}, true
}

func (w *sequenceWindow) idle(now int64, spec *WindowSpec) bool {
	return w.Last <= now-int64(spec.Within) && w.CooldownUntil <= now
}

func (w *sequenceWindow) lastSeen() int64 { return w.Last }
