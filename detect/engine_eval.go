package detect

import (
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"

	"github.com/VictoriaMetrics/metrics"
	"github.com/expr-lang/expr/vm"

	"github.com/vigil-k8s/vigil/ingest"
)

// result is what a worker found in one record.
type result struct {
	err error
	// skip is set for events outside [Since, Until].
	skip bool
	// t is the event time; evKey identifies (auditID, stage), idKey the
	// auditID.
	t            int64
	evKey, idKey uint64
	// final is set for a request's last stage (ResponseComplete, Panic).
	final  bool
	alerts []ruleAlert
	window []windowMatch
}

// ruleAlert is a single-event alert with its rule and suppression key (0:
// not suppressed).
type ruleAlert struct {
	Alert
	rule *Rule
	skey uint64
}

// worker decodes and matches records; each has its own decoder and VM.
type worker struct {
	// env is the expression environment of the event being evaluated.
	env          env
	rs           *RuleSet
	since, until int64
	dec          ingest.Decoder
	vm           vm.VM
	seed         maphash.Seed
	m            *engineMetrics
	log          *slog.Logger
}

func (w *worker) run(recs []ingest.Record, res []result) {
	for i := range recs {
		w.one(&recs[i], &res[i])
	}
}

func (w *worker) one(rec *ingest.Record, r *result) {
	ev, err := w.dec.Decode(rec.Data)
	if err != nil {
		r.err = err
		return
	}
	if ev.Cluster == "" {
		ev.Cluster = rec.Cluster
	}
	r.t = ev.Time().UnixNano()
	if (w.since != 0 && r.t < w.since) || (w.until != 0 && r.t > w.until) {
		r.skip = true
		return
	}
	var h maphash.Hash
	h.SetSeed(w.seed)
	h.WriteString(ev.AuditID)
	r.idKey = h.Sum64()
	h.WriteByte(0)
	h.WriteString(ev.Stage)
	r.evKey = h.Sum64()
	r.final = ev.Stage == "ResponseComplete" || ev.Stage == "Panic"

	x := &evalCtx{w: w, ev: ev}
	for _, rule := range w.rs.index.candidates(ev.ObjectRef.Resource) {
		if !rule.prefilter(ev) {
			continue
		}
		if rule.match != nil && !rule.matchByChecks && !x.test(rule, rule.match) {
			continue
		}
		if rule.steps == nil && x.excepted(rule) {
			continue
		}
		if rule.Spec.Window == nil {
			if rule.outputObjects {
				x.loadObjects()
			}
			w.m.matches(rule).Inc()
			r.alerts = append(r.alerts, ruleAlert{newAlert(rule, ev, windowResult{}), rule, x.suppressKey(rule)})
			continue
		}
		x.windowMatches(rule, r)
	}
}

// evalCtx evaluates the rules of one event: it boxes the environment once
// and decodes the bodies only when an expression that reads them runs.
type evalCtx struct {
	w      *worker
	ev     *ingest.Event
	envAny any
	loaded bool
	id     auditID
	hasID  bool
}

// env returns the expression environment: the worker's env, filled from
// the event, passed by pointer so the event is not copied to the heap.
func (x *evalCtx) env() any {
	if x.envAny == nil {
		x.w.env = env{eventFields: eventFields(*x.ev), Lists: x.w.rs.Lists}
		x.envAny = &x.w.env
	}
	return x.envAny
}

func (x *evalCtx) loadObjects() {
	if !x.loaded {
		x.loaded = true
		x.ev.LoadObjects()
		x.envAny = nil
	}
}

// auditID is the event's auditID as windows keep it, made once.
func (x *evalCtx) auditID() auditID {
	if !x.hasID {
		x.id, x.hasID = newAuditID(x.ev.AuditID), true
	}
	return x.id
}

// run evaluates p; for a boolean program that reads bodies, its body-free
// conditions first.
func (x *evalCtx) run(rule *Rule, p *program) (any, bool) {
	if p.objects && !x.loaded {
		if p.pre != nil {
			if out, ok := x.exec(rule, p.pre); !ok || out != true {
				return false, ok
			}
		}
		x.loadObjects()
	}
	return x.exec(rule, p.p)
}

func (x *evalCtx) exec(rule *Rule, p *vm.Program) (any, bool) {
	out, err := x.w.vm.Run(p, x.env())
	if err != nil {
		x.w.runtimeError(rule, err)
		return nil, false
	}
	return out, true
}

func (x *evalCtx) test(rule *Rule, p *program) bool {
	out, _ := x.run(rule, p)
	b, _ := out.(bool)
	return b
}

func (x *evalCtx) excepted(rule *Rule) bool {
	for _, p := range rule.exceptions {
		if x.test(rule, p) {
			x.w.m.suppressed(rule).Inc()
			return true
		}
	}
	return false
}

// windowMatches evaluates a stateful rule's key, distinct value or steps.
func (x *evalCtx) windowMatches(rule *Rule, r *result) {
	t := x.ev.Time().UnixNano()
	if rule.steps == nil {
		keys, ok := x.keys(rule, rule.by)
		if !ok {
			return
		}
		m := windowMatch{rule: rule, t: t, step: -1, id: x.auditID()}
		if rule.distinct != nil {
			v, ok := x.run(rule, rule.distinct)
			if !ok {
				return
			}
			if m.value = keyString(v); m.value == "" {
				return
			}
		}
		x.w.m.matches(rule).Inc()
		for _, k := range keys {
			m.key = k
			r.window = append(r.window, m)
		}
		return
	}
	excepted := x.excepted(rule)
	// A later step of the same event goes first, so that one event does
	// not chain with itself.
	for i := len(rule.steps) - 1; i >= 0; i-- {
		st := rule.steps[i]
		// Exceptions apply to the step that completes the sequence.
		if (i == len(rule.steps)-1 && excepted) || !x.test(rule, st.match) {
			continue
		}
		keys, ok := x.keys(rule, st.by)
		if !ok {
			continue
		}
		x.w.m.matches(rule).Inc()
		for _, k := range keys {
			r.window = append(r.window, windowMatch{rule: rule, t: t, step: int32(i), key: k, id: x.auditID()})
		}
	}
}

// keys evaluates key expressions: each yields one value or a list, and the
// keys are every combination joined by "|". No key (an empty list) means
// the event cannot be grouped and is skipped.
func (x *evalCtx) keys(rule *Rule, by []*program) ([]string, bool) {
	keys := []string{""}
	for i, p := range by {
		out, ok := x.run(rule, p)
		if !ok {
			return nil, false
		}
		vals := keyStrings(out)
		if len(vals) == 0 {
			return nil, false
		}
		next := make([]string, 0, len(keys)*len(vals))
		for _, k := range keys {
			for _, v := range vals {
				if i > 0 {
					next = append(next, k+"|"+v)
				} else {
					next = append(next, strings.Clone(v))
				}
			}
		}
		keys = next
	}
	return keys, true
}

func keyStrings(v any) []string {
	switch v := v.(type) {
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			out = append(out, keyString(x))
		}
		return out
	}
	return []string{keyString(v)}
}

func keyString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return strings.Clone(v)
	case []string:
		// Join returns a lone element itself: clone, it may point into
		// the decoder's buffer.
		return strings.Clone(strings.Join(v, ","))
	}
	return fmt.Sprint(v)
}

func (w *worker) runtimeError(rule *Rule, err error) {
	c := w.m.ruleErrors(rule)
	n := c.Get()
	c.Inc()
	// Log the 1st, 2nd, 4th, 8th... error of a rule: visible, not a flood.
	if n&(n+1) == 0 {
		w.log.Warn("rule expression failed", "rule", rule.Spec.ID, "err", err, "errors", n+1)
	}
}

// engineMetrics are the engine's counters; per-rule ones are made up front
// so workers only increment.
type engineMetrics struct {
	set                                *metrics.Set
	events, rejected, duplicates, late *metrics.Counter
	filtered                           *metrics.Counter
	suppressEvictions                  *metrics.Counter
	batchSeconds                       *metrics.Histogram
	perRule                            map[*Rule]*ruleMetrics
}

type ruleMetrics struct {
	matches, suppressed, errors, evictions, alertsSuppressed *metrics.Counter
	keys                                                     *metrics.Gauge
}

func newEngineMetrics(s *metrics.Set, rs *RuleSet) *engineMetrics {
	m := &engineMetrics{
		set:               s,
		events:            s.GetOrCreateCounter("vigil_detect_events_total"),
		rejected:          s.GetOrCreateCounter("vigil_detect_rejected_events_total"),
		duplicates:        s.GetOrCreateCounter("vigil_detect_duplicate_events_total"),
		late:              s.GetOrCreateCounter("vigil_detect_late_events_total"),
		filtered:          s.GetOrCreateCounter("vigil_detect_filtered_events_total"),
		suppressEvictions: s.GetOrCreateCounter("vigil_detect_suppress_evictions_total"),
		batchSeconds:      s.GetOrCreateHistogram("vigil_detect_batch_duration_seconds"),
		perRule:           map[*Rule]*ruleMetrics{},
	}
	for _, r := range rs.Rules {
		l := fmt.Sprintf(`{rule=%q}`, r.Spec.ID)
		rm := &ruleMetrics{
			matches:          s.GetOrCreateCounter("vigil_detect_rule_matches_total" + l),
			suppressed:       s.GetOrCreateCounter("vigil_detect_rule_suppressed_total" + l),
			errors:           s.GetOrCreateCounter("vigil_detect_rule_errors_total" + l),
			evictions:        s.GetOrCreateCounter("vigil_detect_window_evictions_total" + l),
			alertsSuppressed: s.GetOrCreateCounter("vigil_detect_alerts_suppressed_total" + l),
		}
		if r.Spec.Window != nil {
			rm.keys = s.GetOrCreateGauge("vigil_detect_window_keys"+l, nil)
		}
		m.perRule[r] = rm
	}
	return m
}

func (m *engineMetrics) matches(r *Rule) *metrics.Counter    { return m.perRule[r].matches }
func (m *engineMetrics) suppressed(r *Rule) *metrics.Counter { return m.perRule[r].suppressed }
func (m *engineMetrics) ruleErrors(r *Rule) *metrics.Counter { return m.perRule[r].errors }
func (m *engineMetrics) evictions(r *Rule) *metrics.Counter  { return m.perRule[r].evictions }
func (m *engineMetrics) keys(r *Rule) *metrics.Gauge         { return m.perRule[r].keys }
func (m *engineMetrics) alertsSuppressed(r *Rule) *metrics.Counter {
	return m.perRule[r].alertsSuppressed
}

func (m *engineMetrics) alert(rule string, sev Severity) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`vigil_detect_alerts_total{rule=%q,severity=%q}`, rule, sev))
}
