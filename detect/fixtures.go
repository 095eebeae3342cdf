package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// fixtureBase is the time of a fixture's first event when it has none.
var fixtureBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// FixtureEvents returns a fixture's events as JSON, filling a missing
// auditID (fixture-N), stage (ResponseComplete) and
// requestReceivedTimestamp (one second apart from 2026-01-01T00:00:00Z).
func FixtureEvents(f Fixture) ([][]byte, error) {
	out := make([][]byte, 0, len(f.Events))
	for i, ev := range f.Events {
		m := make(map[string]any, len(ev)+3)
		for k, v := range ev {
			m[k] = v
		}
		if _, ok := m["auditID"]; !ok {
			m["auditID"] = fmt.Sprintf("fixture-%d", i+1)
		}
		if _, ok := m["stage"]; !ok {
			m["stage"] = "ResponseComplete"
		}
		if _, ok := m["requestReceivedTimestamp"]; !ok {
			m["requestReceivedTimestamp"] = fixtureBase.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano)
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("fixture %q event %d: %w", f.Name, i+1, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// Subset returns a rule set with only the given enabled rules and all
// lists.
func (rs *RuleSet) Subset(ids ...string) *RuleSet {
	sub := &RuleSet{Lists: rs.Lists}
	for _, r := range rs.Rules {
		for _, id := range ids {
			if r.Spec.ID == id {
				c := *r
				c.idx = len(sub.Rules)
				sub.Rules = append(sub.Rules, &c)
				sub.needAnnotations = sub.needAnnotations || c.needAnnotations
				sub.needExtra = sub.needExtra || c.needExtra
			}
		}
	}
	sub.index = buildIndex(sub.Rules)
	return sub
}

// Rule returns the enabled rule with the given id, or nil.
func (rs *RuleSet) Rule(id string) *Rule {
	for _, r := range rs.Rules {
		if r.Spec.ID == id {
			return r
		}
	}
	return nil
}

// Evaluate runs events (JSON) through a fresh single-worker engine over rs
// and returns every alert, windows flushed. A record that is not an event is
// an error.
func Evaluate(rs *RuleSet, events [][]byte) ([]Alert, error) {
	var alerts []Alert
	var rejected error
	e, err := New(Options{Rules: rs, Workers: 1,
		Emit: func(a Alert) error { alerts = append(alerts, a); return nil },
		OnReject: func(r ingest.Record, err error) {
			if rejected == nil {
				rejected = fmt.Errorf("%s: %w", r.Origin, err)
			}
		}})
	if err != nil {
		return nil, err
	}
	recs := make([]ingest.Record, len(events))
	for i, b := range events {
		recs[i] = ingest.Record{Data: b, Origin: fmt.Sprintf("event %d", i+1)}
	}
	ctx := context.Background()
	if err := e.Process(ctx, ingest.Batch{Records: recs}); err != nil {
		return nil, err
	}
	if err := e.Flush(ctx); err != nil {
		return nil, err
	}
	return alerts, rejected
}

// CountAlerts returns how many alerts rule ruleID raises on events, evaluated
// with that rule alone.
func CountAlerts(rs *RuleSet, ruleID string, events [][]byte) (int, error) {
	if rs.Rule(ruleID) == nil {
		return 0, fmt.Errorf("no enabled rule %s", ruleID)
	}
	alerts, err := Evaluate(rs.Subset(ruleID), events)
	return len(alerts), err
}

// FixtureResult is the outcome of one fixture case.
type FixtureResult struct {
	Rule, File string
	Case       string
	// Fire is true for a fire case, false for a quiet case.
	Fire bool
	// Want is the exact number of alerts wanted (fire cases with alerts:
	// set), -1 for "at least one", 0 for quiet cases.
	Want   int
	Alerts []Alert
	Err    error
}

// Passed reports whether the case holds.
func (r FixtureResult) Passed() bool {
	switch {
	case r.Err != nil:
		return false
	case !r.Fire:
		return len(r.Alerts) == 0
	case r.Want < 0:
		return len(r.Alerts) > 0
	}
	return len(r.Alerts) == r.Want
}

// Diff says what was wanted and what happened, for a failed case.
func (r FixtureResult) Diff() string {
	if r.Err != nil {
		return fmt.Sprintf("error: %v", r.Err)
	}
	want := "no alert"
	switch {
	case r.Fire && r.Want < 0:
		want = "at least 1 alert"
	case r.Fire:
		want = fmt.Sprintf("exactly %d alerts", r.Want)
	}
	s := fmt.Sprintf("- want %s\n+ got %d alerts", want, len(r.Alerts))
	for _, a := range r.Alerts {
		s += fmt.Sprintf("\n+   %s key=%q count=%d: %s", a.Time.Format(time.RFC3339), a.GroupKey, a.Count, a.Message)
	}
	return s
}

// RunFixtures runs every fixture of every enabled rule in rs, each case
// with its rule alone.
func RunFixtures(rs *RuleSet) []FixtureResult {
	var out []FixtureResult
	for _, r := range rs.Rules {
		sub := rs.Subset(r.Spec.ID)
		run := func(f Fixture, fire bool) {
			res := FixtureResult{Rule: r.Spec.ID, File: r.Spec.File, Case: f.Name, Fire: fire}
			if fire {
				res.Want = -1
				if f.Alerts > 0 {
					res.Want = f.Alerts
				}
			}
			events, err := FixtureEvents(f)
			if err == nil {
				res.Alerts, err = Evaluate(sub, events)
			}
			res.Err = err
			out = append(out, res)
		}
		for _, f := range r.Spec.Fixtures.Fire {
			run(f, true)
		}
		for _, f := range r.Spec.Fixtures.Quiet {
			run(f, false)
		}
	}
	return out
}
