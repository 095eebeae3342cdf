package detect

import (
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/url"
	"strings"
	"unsafe"

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
	// final is set for a request's last stage (ResponseComplete, Panic);
	// salvaged when the record's JSON was read only in part.
	final, salvaged bool
	alerts          []ruleAlert
	window          []windowMatch
	// hashes are the window matches' key hashes, taken by the worker.
	hashes []matchHash
}

// matchHash is a window match's key hashed for a request's use of it, and
// its shard.
type matchHash struct {
	key   uint64
	shard int
}

// ruleAlert is a single-event rule's match with its suppression key (0:
// not suppressed); the alert is built if suppression lets it out.
type ruleAlert struct {
	rule *Rule
	skey uint64
}

// worker decodes and matches records; each has its own decoder and VM.
type worker struct {
	// x is the evaluation context of the event being matched.
	x            evalCtx
	rs           *RuleSet
	since, until int64
	observe      func(*ingest.Record, *ingest.Event)
	dec          ingest.Decoder
	vm           vm.VM
	seed         maphash.Seed
	m            *engineMetrics
	log          *slog.Logger
	// keys is the room of the keys of a match; interned the strings
	// handed out for matches to keep.
	keys     []string
	interned map[string]string
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
	r.salvaged = w.dec.Salvaged()
	if w.observe != nil {
		w.observe(rec, ev)
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

	x := &w.x
	x.reset(w, ev)
	for _, rule := range w.rs.index.candidates(ev.ObjectRef.Resource, ev.Verb) {
		if !rule.prefilter(x) {
			continue
		}
		if rule.match != nil && !rule.matchByChecks && !x.test(rule, rule.match) {
			continue
		}
		if rule.steps == nil && x.excepted(rule) {
			continue
		}
		if rule.Spec.Window == nil {
			w.m.matches(rule).Inc()
			r.alerts = append(r.alerts, ruleAlert{rule: rule, skey: x.suppressKey(rule)})
			continue
		}
		x.windowMatches(rule, r)
	}
	x.reset(w, nil)
}

// evalCtx evaluates the rules of one event: it boxes the environment once,
// when the VM first needs it, and decodes the bodies only when an
// expression that reads them runs.
type evalCtx struct {
	w      *worker
	ev     *ingest.Event
	envAny any
	loaded bool
	id     auditID
	hasID  bool
	// vars are the let variables of compiled conditions; scratch holds
	// the strings they build.
	vars    []string
	scratch []byte
	ids     []string
	// query is the parsed query of the requestURI, class the class of
	// the last argv classified: every exec rule asks for them.
	query struct {
		uri string
		v   url.Values
		set bool
	}
	class struct {
		argv  []string
		class string
		set   bool
	}
	// lists remembers list lookups: many rules test the user against the
	// same list.
	lists    [8]listLookup
	numLists int
}

type listLookup struct {
	name, v string
	in      bool
}

// inList is lists.contains, remembered for the event.
func (x *evalCtx) inList(lists *compiledLists, name, v string) bool {
	for i := range x.numLists {
		if l := &x.lists[i]; l.name == name && l.v == v {
			return l.in
		}
	}
	in := lists.contains(name, v)
	if x.numLists < len(x.lists) {
		x.lists[x.numLists] = listLookup{name, v, in}
		x.numLists++
	}
	return in
}

// reset prepares x for the event ev (nil: none, so nothing of the last
// event stays reachable).
func (x *evalCtx) reset(w *worker, ev *ingest.Event) {
	*x = evalCtx{w: w, ev: ev, vars: x.vars[:0], scratch: x.scratch[:0], ids: x.ids[:0]}
}

// env returns the expression environment, filled from the event. It is
// boxed by value: the VM then reads its fields, and the fields of user,
// objectRef and the rest, in place without copying them to the heap, which
// it does for every access through a pointer.
func (x *evalCtx) env() any {
	if x.envAny == nil {
		x.envAny = env{eventFields: eventFields(*x.ev), Lists: x.w.rs.Lists}
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

// run evaluates p on the VM; for a boolean program that reads bodies, its
// body-free conditions first.
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

// test evaluates a boolean program: in Go when it has a Go form that can
// decide, else on the VM.
func (x *evalCtx) test(rule *Rule, p *program) bool {
	if p.fast != nil {
		if v, ok := p.fast(x); ok {
			return v
		}
	}
	return x.testVM(rule, p)
}

// testVM evaluates a boolean program on the VM.
func (x *evalCtx) testVM(rule *Rule, p *program) bool {
	out, _ := x.run(rule, p)
	b, _ := out.(bool)
	return b
}

// values evaluates a key program to its strings (borrowed: clone to
// keep), in Go when it has a Go form.
func (x *evalCtx) values(rule *Rule, p *program, one *[1]string) ([]string, bool) {
	switch {
	case p.str != nil:
		if v, ok := p.str(x); ok {
			one[0] = v
			return one[:], true
		}
	case p.strs != nil:
		if v, ok := p.strs(x); ok {
			return v, true
		}
	}
	out, ok := x.run(rule, p)
	if !ok {
		return nil, false
	}
	return keyStrings(out), true
}

// value evaluates a distinct program to its string (borrowed).
func (x *evalCtx) value(rule *Rule, p *program) (string, bool) {
	switch {
	case p.str != nil:
		if v, ok := p.str(x); ok {
			return v, true
		}
	case p.strs != nil:
		if v, ok := p.strs(x); ok {
			return strings.Join(v, ","), true
		}
	}
	out, ok := x.run(rule, p)
	if !ok {
		return "", false
	}
	return keyString(out), true
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
			v, ok := x.value(rule, rule.distinct)
			if !ok || v == "" {
				return
			}
			m.value = x.w.intern(v)
		}
		x.w.m.matches(rule).Inc()
		for _, k := range keys {
			m.key = k
			r.window = append(r.window, m)
			r.hashes = append(r.hashes, x.hash(rule, k))
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
		// A step's value is its user, for the alert's .steps.
		user := x.w.intern(x.ev.User.Username)
		for _, k := range keys {
			r.window = append(r.window, windowMatch{rule: rule, t: t, step: int32(i), key: k, value: user, id: x.auditID()})
			r.hashes = append(r.hashes, x.hash(rule, k))
		}
	}
}

// hash hashes a window match's key (matchHash).
func (x *evalCtx) hash(rule *Rule, key string) matchHash {
	return matchHash{key: maphash.String(x.w.seed, key), shard: shardOf(rule, key)}
}

// keys evaluates key expressions: each yields one value or a list, and the
// keys are every combination joined by "|". No key (an empty list) means
// the event cannot be grouped and is skipped. The keys are interned, so
// they outlive the event; the slice is the worker's until the next call.
func (x *evalCtx) keys(rule *Rule, by []*program) ([]string, bool) {
	w := x.w
	var one [1]string
	keys := w.keys[:0]
	for i, p := range by {
		vals, ok := x.values(rule, p, &one)
		if !ok || len(vals) == 0 {
			return nil, false
		}
		if i == 0 {
			for _, v := range vals {
				keys = append(keys, w.intern(v))
			}
			continue
		}
		next := make([]string, 0, len(keys)*len(vals))
		for _, k := range keys {
			for _, v := range vals {
				next = append(next, w.intern(x.concat(x.concat(k, "|"), v)))
			}
		}
		keys = next
	}
	w.keys = keys
	return keys, true
}

// maxInterned bounds the strings a worker keeps for reuse.
const maxInterned = 8192

// intern returns a copy of s that the worker owns and may hand out again:
// window keys repeat (a user, an address), and a match must outlive the
// event it came from.
func (w *worker) intern(s string) string {
	if v, ok := w.interned[s]; ok {
		return v
	}
	if w.interned == nil || len(w.interned) >= maxInterned {
		w.interned = make(map[string]string, maxInterned)
	}
	v := strings.Clone(s)
	w.interned[v] = v
	return v
}

// concat joins two strings in the event's scratch memory: the result is
// valid until the next event.
func (x *evalCtx) concat(a, b string) string {
	if b == "" {
		return a
	}
	if a == "" {
		return b
	}
	start := len(x.scratch)
	x.scratch = append(append(x.scratch, a...), b...)
	return unsafe.String(&x.scratch[start], len(a)+len(b))
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
	byIdx                              []ruleMetricsAt
}

// ruleMetricsAt is a rule's metrics at its index in the rule set.
type ruleMetricsAt struct {
	rule *Rule
	m    *ruleMetrics
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
		if r.idx == len(m.byIdx) {
			m.byIdx = append(m.byIdx, ruleMetricsAt{r, rm})
		}
	}
	return m
}

// of returns a rule's metrics: by its index, which workers read for every
// match, else from the map.
func (m *engineMetrics) of(r *Rule) *ruleMetrics {
	if r.idx < len(m.byIdx) && m.byIdx[r.idx].rule == r {
		return m.byIdx[r.idx].m
	}
	return m.perRule[r]
}

func (m *engineMetrics) matches(r *Rule) *metrics.Counter    { return m.of(r).matches }
func (m *engineMetrics) suppressed(r *Rule) *metrics.Counter { return m.of(r).suppressed }
func (m *engineMetrics) ruleErrors(r *Rule) *metrics.Counter { return m.of(r).errors }
func (m *engineMetrics) evictions(r *Rule) *metrics.Counter  { return m.of(r).evictions }
func (m *engineMetrics) keys(r *Rule) *metrics.Gauge         { return m.of(r).keys }
func (m *engineMetrics) alertsSuppressed(r *Rule) *metrics.Counter {
	return m.of(r).alertsSuppressed
}

func (m *engineMetrics) alert(rule string, sev Severity) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`vigil_detect_alerts_total{rule=%q,severity=%q}`, rule, sev))
}
