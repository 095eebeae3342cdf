package detect

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/expr-lang/expr/vm"

	"github.com/vigil-k8s/vigil/ingest"
)

// Engine defaults.
const (
	DefaultLateness       = 5 * time.Minute
	DefaultDedupSize      = 1 << 18
	DefaultMaxKeysPerRule = 100_000
	// DefaultMaxPending bounds the matches buffered for ordering; past it
	// the oldest are released early.
	DefaultMaxPending = 200_000
	// shardCount is fixed, not derived from the worker count, so bounds per
	// shard (keys, pending matches) and therefore the alerts are the same
	// whatever the number of workers.
	shardCount = 16
)

// Options configure an Engine.
type Options struct {
	Rules *RuleSet
	// Workers decode and match in parallel (default GOMAXPROCS). The alerts
	// do not depend on it.
	Workers int
	// Emit receives every alert, from the goroutine that called Process or
	// Flush, in a deterministic order. An error fails the batch (it is not
	// acknowledged).
	Emit func(Alert) error
	// OnReject is told about every record that is not an audit event, in
	// input order, from the goroutine that called Process. Optional.
	OnReject func(ingest.Record, error)
	// Metrics receives the engine's metrics (default: a private set).
	Metrics *metrics.Set
	Logger  *slog.Logger
	// Lateness is how far (in event time) behind the newest event an event
	// may arrive and still count in windows (default DefaultLateness).
	// Window alerts are raised once the watermark passes the event by this
	// much, or at Flush.
	Lateness time.Duration
	// DedupSize bounds the (auditID, stage) pairs remembered to drop
	// duplicates (default DefaultDedupSize; the memory is about 40 bytes an
	// entry, up to twice this many).
	DedupSize int
	// SourceDedups says the source already drops duplicate (auditID, stage)
	// pairs, as vigil serve's queue does: the engine then keeps no set of
	// events, which costs a cache miss or two per event. Alerts stay
	// once per request and rule either way.
	SourceDedups bool
	// MaxKeysPerRule bounds window keys per rule (default
	// DefaultMaxKeysPerRule); the idlest are evicted past it.
	MaxKeysPerRule int
	// Since and Until, when set, skip events outside [Since, Until] (event
	// time); they are counted, not evaluated.
	Since, Until time.Time
}

// Engine evaluates rules on batches of audit events. Process and Flush must
// be called from one goroutine at a time.
type Engine struct {
	rules    *RuleSet
	emit     func(Alert) error
	onReject func(ingest.Record, error)
	log      *slog.Logger
	lateness int64

	since, until int64

	workers []*worker
	shards  []*shard
	seed    maphash.Seed

	// The fields below belong to the goroutine calling Process.
	events    *ingest.Dedup[uint64] // nil with SourceDedups
	fired     *ingest.Dedup[uint64]
	watermark int64
	seq       uint64
	results   []result
	perShard  [][]*windowMatch
	// unsent are alerts raised but not yet handed to Emit (it failed): they
	// go first on the next call, so an Emit failure loses no alert.
	unsent []Alert
	m      *engineMetrics
}

// New starts an engine.
func New(o Options) (*Engine, error) {
	if o.Rules == nil {
		return nil, errors.New("detect: Options.Rules is required")
	}
	if o.Emit == nil {
		return nil, errors.New("detect: Options.Emit is required")
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Lateness <= 0 {
		o.Lateness = DefaultLateness
	}
	if o.DedupSize <= 0 {
		o.DedupSize = DefaultDedupSize
	}
	if o.MaxKeysPerRule <= 0 {
		o.MaxKeysPerRule = DefaultMaxKeysPerRule
	}
	e := &Engine{
		rules: o.Rules, emit: o.Emit, onReject: o.OnReject, log: o.Logger,
		lateness: int64(o.Lateness), seed: maphash.MakeSeed(),
		fired: ingest.NewDedup[uint64](2*o.DedupSize, 0),
		m:     newEngineMetrics(o.Metrics, o.Rules),
	}
	if !o.SourceDedups {
		e.events = ingest.NewDedup[uint64](2*o.DedupSize, 0)
	}
	if !o.Since.IsZero() {
		e.since = o.Since.UnixNano()
	}
	if !o.Until.IsZero() {
		e.until = o.Until.UnixNano()
	}
	for range o.Workers {
		e.workers = append(e.workers, &worker{rs: o.Rules, seed: e.seed, m: e.m, log: o.Logger, since: e.since, until: e.until,
			dec: ingest.Decoder{Annotations: o.Rules.needAnnotations, Extra: o.Rules.needExtra}})
	}
	for range shardCount {
		e.shards = append(e.shards, newShard(o.Lateness, max(1, o.MaxKeysPerRule/shardCount), DefaultMaxPending/shardCount, e.m))
	}
	e.perShard = make([][]*windowMatch, shardCount)
	return e, nil
}

// result is what a worker found in one record.
type result struct {
	err error
	// skip is set for events outside [Since, Until].
	skip bool
	// t is the event time; evKey identifies (auditID, stage), idKey the
	// auditID.
	t            int64
	evKey, idKey uint64
	alerts       []ruleAlert
	window       []*windowMatch
}

// ruleAlert is a single-event alert with its rule.
type ruleAlert struct {
	Alert
	rule *Rule
}

// Process decodes and evaluates a batch, emits its alerts, and acks it.
// Window alerts are emitted when the watermark has passed their events by
// the lateness, possibly in a later call. On error the batch is acked with
// the error (so a queue redelivers it) and the error returned.
func (e *Engine) Process(ctx context.Context, b ingest.Batch) error {
	err := e.process(ctx, b.Records)
	if b.Ack != nil {
		if aerr := b.Ack(ctx, err); aerr != nil && err == nil {
			err = fmt.Errorf("ack batch: %w", aerr)
		}
	}
	return err
}

func (e *Engine) process(ctx context.Context, recs []ingest.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Alerts a failed Emit left are sent before this batch is looked at;
	// if that fails again, the batch is refused whole.
	if err := e.sendUnsent(); err != nil {
		return err
	}
	start := time.Now()
	if cap(e.results) < len(recs) {
		e.results = make([]result, len(recs))
	}
	res := e.results[:len(recs)]
	clear(res)
	e.match(recs, res)

	// Sequential part: input order decides duplicates, the watermark and
	// lateness, so the outcome does not depend on the worker count.
	for i := range res {
		r := &res[i]
		e.seq++
		if r.err != nil {
			e.m.rejected.Inc()
			if e.onReject != nil {
				e.onReject(recs[i], r.err)
			}
			continue
		}
		if r.skip {
			e.m.filtered.Inc()
			continue
		}
		e.m.events.Inc()
		if e.events != nil && e.events.Seen(r.evKey) {
			e.m.duplicates.Inc()
			continue
		}
		if r.t > e.watermark {
			e.watermark = r.t
		}
		for _, a := range r.alerts {
			if !e.fired.Seen(firedKey(r.idKey, a.rule, 0, 0)) {
				e.unsent = append(e.unsent, a.Alert)
			}
		}
		late := false
		for _, m := range r.window {
			if e.fired.Seen(firedKey(r.idKey, m.rule, m.step+2, maphash.String(e.seed, m.key))) {
				continue
			}
			if m.t < e.watermark-e.lateness {
				late = true
				continue
			}
			m.seq = e.seq
			i := e.shardIndex(m.rule, m.key)
			e.perShard[i] = append(e.perShard[i], m)
		}
		if late {
			e.m.late.Inc()
		}
	}
	e.runShards(false)
	e.m.batchSeconds.UpdateDuration(start)
	return e.sendUnsent()
}

// firedKey identifies a rule's use of a request (its auditID hash), so a
// request seen at several stages counts once per rule; for window rules
// per step and key too.
func firedKey(auditID uint64, r *Rule, step int, key uint64) uint64 {
	return auditID ^ uint64(r.idx+1)*0x9E3779B97F4A7C15 ^ uint64(step)<<48 ^ key
}

// match runs the workers over the batch. They take small chunks in turn,
// so a worker that drew costly events does not hold the others back.
func (e *Engine) match(recs []ingest.Record, res []result) {
	const chunk = 64
	n := min(len(e.workers), (len(recs)+chunk-1)/chunk)
	if n <= 1 {
		e.workers[0].run(recs, res)
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, w := range e.workers[:n] {
		wg.Go(func() {
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= len(recs) {
					return
				}
				hi := min(lo+chunk, len(recs))
				w.run(recs[lo:hi], res[lo:hi])
			}
		})
	}
	wg.Wait()
}

// runShards hands each shard its matches, waits, and queues the window
// alerts in a deterministic order.
func (e *Engine) runShards(flush bool) {
	var wg sync.WaitGroup
	for i, s := range e.shards {
		ms := e.perShard[i]
		if len(ms) == 0 && !flush && (len(s.pending) == 0 || s.pending[0].t > e.watermark-e.lateness) {
			continue
		}
		wg.Go(func() { s.add(ms, e.watermark, flush) })
	}
	wg.Wait()
	var fired []firedAlert
	for i, s := range e.shards {
		clear(e.perShard[i])
		e.perShard[i] = e.perShard[i][:0]
		fired = append(fired, s.alerts...)
		clear(s.alerts)
		s.alerts = s.alerts[:0]
	}
	slices.SortFunc(fired, func(a, b firedAlert) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		if c := strings.Compare(a.Rule, b.Rule); c != 0 {
			return c
		}
		return strings.Compare(a.GroupKey, b.GroupKey)
	})
	// A sequence completed by one event for several keys (a user and its
	// groups) raises one alert: the first key in order.
	done := map[string]bool{}
	for _, f := range fired {
		if f.sequence {
			k := f.Rule + "\x00" + f.trigger
			if done[k] {
				continue
			}
			done[k] = true
		}
		e.unsent = append(e.unsent, f.Alert)
	}
}

// sendUnsent hands the queued alerts to Emit in order, keeping those after
// a failure for the next call.
func (e *Engine) sendUnsent() error {
	for i, a := range e.unsent {
		if err := e.emit(a); err != nil {
			e.unsent = slices.Delete(e.unsent, 0, i)
			return fmt.Errorf("emit alert %s: %w", a.Rule, err)
		}
		e.m.alert(a.Rule, a.Severity).Inc()
	}
	clear(e.unsent)
	e.unsent = e.unsent[:0]
	return nil
}

// Flush releases every buffered window match and emits what fires: the
// end of a replay.
func (e *Engine) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := e.sendUnsent(); err != nil {
		return err
	}
	e.runShards(true)
	return e.sendUnsent()
}

// Advance moves the watermark to t if it is behind, so window matches are
// released while no events arrive (live input, with t = now).
func (e *Engine) Advance(ctx context.Context, t time.Time) error {
	if ns := t.UnixNano(); ns > e.watermark {
		e.watermark = ns
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := e.sendUnsent(); err != nil {
		return err
	}
	e.runShards(false)
	return e.sendUnsent()
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
		if rule.outputObjects {
			x.loadObjects()
		}
		if rule.Spec.Window == nil {
			w.m.matches(rule).Inc()
			r.alerts = append(r.alerts, ruleAlert{newAlert(rule, ev, windowResult{}), rule})
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
	var owned *ingest.Event
	own := func() *ingest.Event {
		if owned == nil {
			owned = x.ev.Clone()
		}
		return owned
	}
	t := x.ev.Time().UnixNano()
	if rule.steps == nil {
		keys, ok := x.keys(rule, rule.by)
		if !ok {
			return
		}
		m := &windowMatch{rule: rule, t: t, step: -1}
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
			mm := *m
			mm.key, mm.ev = k, own()
			r.window = append(r.window, &mm)
		}
		return
	}
	excepted := x.excepted(rule)
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
			r.window = append(r.window, &windowMatch{rule: rule, ev: own(), t: t, step: i, key: k})
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
	batchSeconds                       *metrics.Histogram
	windowKeys                         *metrics.Gauge
	perRule                            map[*Rule]*ruleMetrics
}

type ruleMetrics struct {
	matches, suppressed, errors, evictions *metrics.Counter
}

func newEngineMetrics(s *metrics.Set, rs *RuleSet) *engineMetrics {
	m := &engineMetrics{
		set:          s,
		events:       s.GetOrCreateCounter("vigil_detect_events_total"),
		rejected:     s.GetOrCreateCounter("vigil_detect_rejected_events_total"),
		duplicates:   s.GetOrCreateCounter("vigil_detect_duplicate_events_total"),
		late:         s.GetOrCreateCounter("vigil_detect_late_events_total"),
		filtered:     s.GetOrCreateCounter("vigil_detect_filtered_events_total"),
		batchSeconds: s.GetOrCreateHistogram("vigil_detect_batch_duration_seconds"),
		windowKeys:   s.GetOrCreateGauge("vigil_detect_window_keys", nil),
		perRule:      map[*Rule]*ruleMetrics{},
	}
	for _, r := range rs.Rules {
		l := fmt.Sprintf(`{rule=%q}`, r.Spec.ID)
		m.perRule[r] = &ruleMetrics{
			matches:    s.GetOrCreateCounter("vigil_detect_rule_matches_total" + l),
			suppressed: s.GetOrCreateCounter("vigil_detect_rule_suppressed_total" + l),
			errors:     s.GetOrCreateCounter("vigil_detect_rule_errors_total" + l),
			evictions:  s.GetOrCreateCounter("vigil_detect_window_evictions_total" + l),
		}
	}
	return m
}

func (m *engineMetrics) matches(r *Rule) *metrics.Counter    { return m.perRule[r].matches }
func (m *engineMetrics) suppressed(r *Rule) *metrics.Counter { return m.perRule[r].suppressed }
func (m *engineMetrics) ruleErrors(r *Rule) *metrics.Counter { return m.perRule[r].errors }
func (m *engineMetrics) evictions(r *Rule) *metrics.Counter  { return m.perRule[r].evictions }

func (m *engineMetrics) alert(rule string, sev Severity) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`vigil_detect_alerts_total{rule=%q,severity=%q}`, rule, sev))
}
