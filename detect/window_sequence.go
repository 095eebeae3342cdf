package detect

// sequenceWindow follows ordered steps for one key: it fires when the last
// step matches and every earlier step matched before it, in order, all
// within Within of the first.
type sequenceWindow struct {
	// Chains[i] is the chain of matches that reached step i, the one that
	// started last (it leaves a later step the most time).
	Chains []seqChain `json:"chains,omitempty"`
	// Waiting[i] is the newest match of step i that continued no chain:
	// a late earlier step may still come before it.
	Waiting []seqStep `json:"waiting,omitempty"`
	// Last is the time of the newest match; Fired the time the sequence
	// last completed (0: never).
	Last  int64 `json:"last"`
	Fired int64 `json:"fired,omitempty"`
}

// seqChain is a chain of step matches: when it started and ended, and the
// auditIDs of its steps (none: no chain), with the time and user of each
// (for the alert's .steps; a chain restored from an older snapshot may
// lack them).
type seqChain struct {
	Start int64     `json:"start"`
	End   int64     `json:"end"`
	IDs   []auditID `json:"ids,omitempty"`
	Times []int64   `json:"times,omitempty"`
	Users []string  `json:"users,omitempty"`
}

// seqStep is a step match; the user a step matched for comes in the
// match's value (windowMatches).
type seqStep struct {
	T    int64   `json:"t"`
	ID   auditID `json:"id"`
	User string  `json:"user,omitempty"`
	OK   bool    `json:"ok,omitempty"`
}

// continues reports whether a match of the next step at t (auditID id)
// extends the chain: after it, not the same request, within the window.
func (c *seqChain) continues(t int64, id auditID, within int64) bool {
	if len(c.IDs) == 0 || t < c.End || t-c.Start > within {
		return false
	}
	return t > c.End || !c.IDs[len(c.IDs)-1].equal(id)
}

func (c *seqChain) extend(t int64, id auditID, user string) seqChain {
	ids := make([]auditID, len(c.IDs), len(c.IDs)+1)
	copy(ids, c.IDs)
	next := seqChain{Start: c.Start, End: t, IDs: append(ids, id)}
	if len(c.Times) == len(c.IDs) && len(c.Users) == len(c.IDs) {
		next.Times = append(append(make([]int64, 0, len(ids)), c.Times...), t)
		next.Users = append(append(make([]string, 0, len(ids)), c.Users...), user)
	}
	return next
}

func (w *sequenceWindow) add(m *windowMatch, _ *shard) (windowResult, bool) {
	spec := m.rule.Spec.Window
	n := len(spec.Steps)
	step := int(m.step)
	if step < 0 || step >= n || (w.Fired != 0 && m.t < w.Fired) {
		return windowResult{}, false
	}
	if len(w.Chains) != n {
		w.Chains, w.Waiting = make([]seqChain, n), make([]seqStep, n)
	}
	w.Last = max(w.Last, m.t)
	within := int64(spec.Within)
	var c seqChain
	switch {
	case step == 0:
		c = seqChain{Start: m.t, End: m.t, IDs: []auditID{m.id}, Times: []int64{m.t}, Users: []string{m.value}}
	case w.Chains[step-1].continues(m.t, m.id, within):
		c = w.Chains[step-1].extend(m.t, m.id, m.value)
	default:
		if wt := &w.Waiting[step]; !wt.OK || m.t > wt.T {
			*wt = seqStep{T: m.t, ID: m.id, User: m.value, OK: true}
		}
		return windowResult{}, false
	}
	// Carry the chain as far as it goes: a step that arrived before the
	// earlier step it follows (late input) continues it now.
	for {
		if step == n-1 {
			return w.complete(c, spec)
		}
		if old := &w.Chains[step]; len(old.IDs) == 0 || c.Start >= old.Start {
			*old = c
		}
		next := &w.Waiting[step+1]
		if !next.OK || !c.continues(next.T, next.ID, within) {
			return windowResult{}, false
		}
		c = c.extend(next.T, next.ID, next.User)
		*next = seqStep{}
		step++
	}
}

// complete ends a chain that reached the last step: the sequence fires
// unless its key is in a cooldown, and starts afresh either way.
func (w *sequenceWindow) complete(c seqChain, spec *WindowSpec) (windowResult, bool) {
	clear(w.Chains)
	clear(w.Waiting)
	if w.Fired != 0 && c.End < w.Fired+int64(spec.Cooldown) {
		return windowResult{}, false
	}
	w.Fired = c.End
	ids := make([]string, len(c.IDs))
	steps := make([]stepResult, len(c.IDs))
	for i, id := range c.IDs {
		ids[i] = id.String()
		steps[i] = stepResult{auditID: ids[i]}
		if i < len(spec.Steps) {
			steps[i].name = spec.Steps[i].Name
		}
		if len(c.Times) == len(c.IDs) && len(c.Users) == len(c.IDs) {
			steps[i].time, steps[i].user = unixUTC(c.Times[i]), c.Users[i]
		}
	}
	return windowResult{count: len(spec.Steps), first: unixUTC(c.Start), last: unixUTC(c.End),
		auditIDs: ids[:min(len(ids), maxSampleIDs)], steps: steps}, true
}

func (w *sequenceWindow) idle(horizon int64, spec *WindowSpec) bool {
	return w.Last <= horizon-int64(spec.Within) && (w.Fired == 0 || w.Fired+int64(spec.Cooldown) <= horizon)
}

func (w *sequenceWindow) lastSeen() int64 { return w.Last }
