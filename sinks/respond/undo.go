package respond

import (
	"context"
	"fmt"
	"time"
)

// Undo reverts the action id of the journal: it puts back the record's
// Before and appends an undo record (ID "<id>.undo", status undone), which
// it returns. Only actions that were done can be undone, and only once.
// cfg supplies the action's params (the webhook's URL, the quarantine
// label); when the rule is gone from it, the defaults are used.
func Undo(ctx context.Context, c *Cluster, j *Journal, cfg Config, id string, now time.Time) (Record, error) {
	recs, _, err := ReadJournal(j.Path())
	if err != nil {
		return Record{}, err
	}
	var rec Record
	found := false
	for _, r := range recs {
		switch r.ID {
		case id:
			rec, found = r, true
		case undoID(id):
			return Record{}, fmt.Errorf("action %s was undone at %s", id, r.Time.Format(time.RFC3339))
		}
	}
	switch {
	case !found:
		return Record{}, fmt.Errorf("no action %s in %s", id, j.Path())
	case rec.Undoes != "":
		return Record{}, fmt.Errorf("%s is the record of an undo: it cannot be undone", id)
	case rec.Status == StatusPlanned:
		return Record{}, fmt.Errorf("action %s was a dry-run: nothing was changed", id)
	case rec.Status == StatusStarted:
		return Record{}, fmt.Errorf("action %s was started and not finished: vigil finishes it when the alert is delivered again", id)
	case rec.Status != StatusDone:
		return Record{}, fmt.Errorf("action %s is %s: only actions that were done can be undone", id, rec.Status)
	}
	typ, ok := lookupAction(rec.Action)
	if !ok {
		return Record{}, fmt.Errorf("action %s has unknown type %q", id, rec.Action)
	}
	p := typ.params()
	for _, r := range cfg.Rules {
		if r.Name == rec.Response.Rule && rec.Response.Action < len(r.Actions) && r.Actions[rec.Response.Action].Type == rec.Action {
			p = r.Actions[rec.Response.Action].params()
		}
	}
	if err := p.Validate(); err != nil {
		return Record{}, fmt.Errorf("undo %s: the config has no params for %s of rule %s: %w", id, rec.Action, rec.Response.Rule, err)
	}
	if c == nil && !typ.offline {
		return Record{}, fmt.Errorf("undo %s: no cluster", id)
	}
	detail, err := typ.undo(ctx, &undoing{c: c, rec: rec, p: p, now: now})
	if err != nil {
		return Record{}, fmt.Errorf("undo %s (%s %s): %w", id, rec.Action, rec.Target, err)
	}
	u := Record{ID: undoID(id), Time: now, Action: rec.Action, Mode: ModeEnforce, Status: StatusUndone,
		Target: rec.Target, Reason: "undo of " + id, Detail: detail, Response: rec.Response, Alert: rec.Alert, Undoes: id}
	if err := j.Append(u); err != nil {
		return Record{}, err
	}
	return u, nil
}
