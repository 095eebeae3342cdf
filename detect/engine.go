package detect

import (
	"cmp"
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

	"github.com/vigil-k8s/vigil/ingest"
)

// Engine defaults.
const (
	DefaultLateness       = 5 * time.Minute
	DefaultDedupSize      = 1 << 18
	DefaultMaxKeysPerRule = 100_000
	// shardCount is fixed, not derived from the worker count, so bounds per
	// shard and therefore the alerts are the same whatever the number of
	// workers.
	shardCount = 16
)

// Options configure an Engine.
type Options struct {
	Rules *RuleSet
	// Workers decode and match in parallel (default GOMAXPROCS). The alerts
	// do not depend on it.
	Workers int
	// Emit receives every alert, from the goroutine that called Process,
	// Advance or Flush, in a deterministic order. An error fails the batch
	// (it is not acknowledged).
	Emit func(Alert) error
	// OnReject is told about every record that is not an audit event, in
	// input order, from the goroutine that called Process. Optional.
	OnReject func(ingest.Record, error)
	// OnSalvage, when set, is told about every record whose JSON is not
	// whole but whose metadata was read and evaluated (marked
	// vigil.bodyUnparsed), with why, in input order, from the goroutine
	// that called Process or Run.
	OnSalvage func(ingest.Record, error)
	// Observe, when set, sees every record that decoded as an audit event,
	// with the event, as a worker decoded it for matching: concurrently,
	// in no order, the event valid only during the call. It is for work
	// on every event that would otherwise read the input a second time.
	Observe func(*ingest.Record, *ingest.Event)
	// Metrics receives the engine's metrics (default: a private set).
	Metrics *metrics.Set
	Logger  *slog.Logger
	// Lateness is how far (in event time) behind the newest event an event
	// may arrive and still count in windows (default DefaultLateness).
	// Windows fire on arrival; the lateness only decides which events are
	// too late and how long window state is kept.
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
	// MaxKeysPerRule bounds window keys per rule, and the suppression
	// state of single-event rules (default DefaultMaxKeysPerRule); the
	// idlest are evicted past it.
	MaxKeysPerRule int
	// DistinctExact is how many distinct values a distinct window counts
	// exactly before a sketch estimates the count (default
	// DefaultDistinctExact).
	DistinctExact int
	// Since and Until, when set, skip events outside [Since, Until] (event
	// time); they are counted, not evaluated.
	Since, Until time.Time
}

// Engine evaluates rules on batches of audit events. Process, Advance and
// Flush must be called from one goroutine at a time.
type Engine struct {
	rules     *RuleSet
	emit      func(Alert) error
	onReject  func(ingest.Record, error)
	onSalvage func(ingest.Record, error)
	log       *slog.Logger
	lateness  int64
	maxKeys   int

	since, until int64

	workers []*worker
	shards  []*shard
	seed    maphash.Seed

	// The fields below belong to the goroutine calling Process.
	events *keySet // nil with SourceDedups
	// fired records the matches of requests, so that a request counts once
	// per rule over its stages. With an event set, a request's last stage
	// (ResponseComplete, Panic) only looks: its duplicates are dropped
	// before, and no stage comes after it.
	fired *keySet
	// redo holds the events of batches whose alerts could not all be
	// emitted: the batch comes again and they must not count twice.
	redo      map[uint64]struct{}
	watermark int64
	seq       uint64
	results   []result
	perShard  [][]windowMatch
	// dec decodes a record again to build its alert; decoded is the index
	// in the batch of the record decodedEv holds.
	dec       ingest.Decoder
	decoded   int32
	decodedEv *ingest.Event
	suppress  *suppressor
	evicted   map[string]*evictionReport
	// batch collects a batch's alerts to put them in input order.
	batch []orderedAlert
	// unsent are alerts raised but not yet handed to Emit (it failed): they
	// go first on the next call, so an Emit failure loses no alert.
	unsent []Alert
	m      *engineMetrics
}

// orderedAlert is an alert with the input position of the event that raised
// it: alerts go out in input order, whatever the batch size.
type orderedAlert struct {
	seq  uint64
	kind int // single-event, window, eviction: in that order for one event
	a    Alert
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
	if o.DistinctExact <= 0 {
		o.DistinctExact = DefaultDistinctExact
	}
	e := &Engine{
		rules: o.Rules, emit: o.Emit, onReject: o.OnReject, onSalvage: o.OnSalvage, log: o.Logger,
		lateness: int64(o.Lateness), maxKeys: o.MaxKeysPerRule, seed: maphash.MakeSeed(),
		fired:   newKeySet(2 * o.DedupSize),
		m:       newEngineMetrics(o.Metrics, o.Rules),
		dec:     ingest.Decoder{Annotations: o.Rules.needAnnotations, Extra: o.Rules.needExtra},
		evicted: map[string]*evictionReport{},
	}
	e.suppress = newSuppressor(o.MaxKeysPerRule, e.m)
	if !o.SourceDedups {
		e.events = newKeySet(2 * o.DedupSize)
	}
	if !o.Since.IsZero() {
		e.since = o.Since.UnixNano()
	}
	if !o.Until.IsZero() {
		e.until = o.Until.UnixNano()
	}
	for range o.Workers {
		e.workers = append(e.workers, &worker{rs: o.Rules, seed: e.seed, m: e.m, log: o.Logger, since: e.since, until: e.until,
			observe: o.Observe, dec: ingest.Decoder{Annotations: o.Rules.needAnnotations, Extra: o.Rules.needExtra}})
	}
	for range shardCount {
		e.shards = append(e.shards, newShard(o.Lateness, max(1, o.MaxKeysPerRule/shardCount), o.DistinctExact, e.m))
	}
	e.perShard = make([][]windowMatch, shardCount)
	return e, nil
}

// Process decodes and evaluates a batch, emits its alerts, and acks it.
// Windows fire at the event that completes them. On error the batch is
// acked with the error (so a queue redelivers it) and the error returned.
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
	if cap(e.results) < len(recs) {
		e.results = make([]result, len(recs))
	}
	res := resetResults(e.results[:len(recs)])
	start := time.Now()
	e.match(recs, res)
	return e.apply(recs, res, start)
}

// resetResults empties results for a batch, keeping the room of their
// lists.
func resetResults(res []result) []result {
	for i := range res {
		res[i] = result{alerts: res[i].alerts[:0], window: res[i].window[:0], hashes: res[i].hashes[:0]}
	}
	return res
}

// apply runs the part of a batch that goes in input order, once its
// records are matched, and emits its alerts.
func (e *Engine) apply(recs []ingest.Record, res []result, start time.Time) error {
	e.decodedEv = nil
	// Sequential part: input order decides duplicates, the watermark,
	// lateness and suppression, so the outcome does not depend on the
	// worker count or the batch size.
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
		if r.salvaged && e.onSalvage != nil {
			e.onSalvage(recs[i], ingest.NotWhole(recs[i].Data))
		}
		if r.skip {
			e.m.filtered.Inc()
			continue
		}
		e.m.events.Inc()
		if e.events != nil && e.events.Seen(r.evKey) || e.redone(r.evKey) {
			e.m.duplicates.Inc()
			continue
		}
		e.watermark = max(e.watermark, r.t)
		if e.watermark-e.suppress.swept >= sweepEvery {
			e.suppress.sweep(e.watermark - e.lateness)
			e.suppress.swept = e.watermark
		}
		for _, a := range r.alerts {
			if e.once(r, firedKey(r.idKey, a.rule, 0, 0)) {
				continue
			}
			// Suppression decides on the rule and the time alone: the
			// alert is built only when it goes out.
			adm := Alert{Rule: a.rule.Spec.ID, Time: unixUTC(r.t)}
			if !e.suppress.admit(a.rule, a.skey, &adm, e.watermark-e.lateness) {
				continue
			}
			al, ok := e.buildAlert(recs, int32(i), a.rule, windowResult{})
			if !ok {
				continue
			}
			if adm.Fingerprint != "" {
				al.Fingerprint, al.Suppressed, al.SuppressedSince = adm.Fingerprint, adm.Suppressed, adm.SuppressedSince
			}
			e.batch = append(e.batch, orderedAlert{seq: e.seq, a: al})
		}
		late := false
		for j, m := range r.window {
			// The worker hashed the key: for this request's use of it,
			// and for the shard that owns it.
			h := r.hashes[j]
			if e.once(r, firedKey(r.idKey, m.rule, int(m.step)+2, h.key)) {
				continue
			}
			if m.t < e.watermark-e.lateness {
				late = true
				continue
			}
			m.seq, m.wm, m.rec = e.seq, e.watermark, int32(i)
			e.perShard[h.shard] = append(e.perShard[h.shard], m)
		}
		if late {
			e.m.late.Inc()
		}
	}
	e.runShards(recs)
	e.m.batchSeconds.UpdateDuration(start)
	if err := e.sendUnsent(); err != nil {
		e.markRedo(res)
		return err
	}
	return nil
}

// once reports whether a request already used rule match key, at an
// earlier stage or in a duplicate, and records the key.
func (e *Engine) once(r *result, key uint64) bool {
	if !r.final || e.events == nil {
		return e.fired.Seen(key)
	}
	if e.fired.Len() == 0 {
		return false
	}
	return e.fired.Has(key)
}

// maxRedo bounds the events remembered from failed batches; past it the
// oldest failures are forgotten.
const maxRedo = 1 << 16

// markRedo remembers the events of a batch that was applied but whose
// alerts were not all emitted: the queue delivers it again.
func (e *Engine) markRedo(res []result) {
	if e.redo == nil || len(e.redo)+len(res) > maxRedo {
		e.redo = map[uint64]struct{}{}
	}
	for i := range res {
		if r := &res[i]; r.err == nil && !r.skip {
			e.redo[r.evKey] = struct{}{}
		}
	}
}

// redone reports whether an event was applied by a batch that failed, and
// forgets it.
func (e *Engine) redone(key uint64) bool {
	if _, ok := e.redo[key]; ok {
		delete(e.redo, key)
		return true
	}
	return false
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

// runShards hands each shard its matches, waits, and queues the batch's
// alerts in input order. recs is the batch: a window that fired has its
// alert built from the record that completed it.
func (e *Engine) runShards(recs []ingest.Record) {
	var wg sync.WaitGroup
	for i, s := range e.shards {
		if ms := e.perShard[i]; len(ms) > 0 {
			wg.Go(func() { s.run(ms) })
		}
	}
	wg.Wait()
	var fired []firedRef
	var evicted []evictRef
	for i, s := range e.shards {
		clear(e.perShard[i])
		e.perShard[i] = e.perShard[i][:0]
		fired = append(fired, s.fired...)
		evicted = append(evicted, s.evicted...)
		clear(s.fired)
		s.fired = s.fired[:0]
		s.evicted = s.evicted[:0]
	}
	slices.SortFunc(fired, func(a, b firedRef) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.rule.idx, b.rule.idx), strings.Compare(a.res.key, b.res.key))
	})
	for i, f := range fired {
		// A sequence completed by one event for several keys (a user and
		// its groups) raises one alert: the first key in order.
		if f.rule.steps != nil && i > 0 && fired[i-1].seq == f.seq && fired[i-1].rule == f.rule {
			continue
		}
		a, ok := e.buildAlert(recs, f.rec, f.rule, f.res)
		if !ok {
			continue
		}
		if cd := int64(f.rule.Spec.Window.Cooldown); cd > 0 {
			// One alert per key and cooldown: it is named by the period of
			// event time it fired in, the same live or replayed whatever
			// the arrival order.
			a.Fingerprint = Fingerprint(a.Rule, a.GroupKey, unixUTC(floorDiv(a.LastTime.UnixNano(), cd)*cd))
		}
		e.batch = append(e.batch, orderedAlert{seq: f.seq, kind: 1, a: a})
	}
	slices.SortStableFunc(evicted, func(a, b evictRef) int { return cmp.Compare(a.seq, b.seq) })
	for _, ev := range evicted {
		if a, ok := e.evictionAlert(ev.rule, ev.n, ev.wm); ok {
			e.batch = append(e.batch, orderedAlert{seq: ev.seq, kind: 2, a: a})
		}
	}
	slices.SortStableFunc(e.batch, func(a, b orderedAlert) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.kind, b.kind))
	})
	for _, o := range e.batch {
		e.unsent = append(e.unsent, o.a)
	}
	clear(e.batch)
	e.batch = e.batch[:0]
}

// buildAlert builds the alert of rule raised by record rec of the batch,
// decoding it again: matching keeps no event.
func (e *Engine) buildAlert(recs []ingest.Record, rec int32, rule *Rule, w windowResult) (Alert, bool) {
	if e.decoded != rec || e.decodedEv == nil {
		ev, err := e.dec.Decode(recs[rec].Data)
		if err != nil {
			e.log.Error("BUG: a record decoded once does not decode again", "rule", rule.Spec.ID, "err", err)
			return Alert{}, false
		}
		if ev.Cluster == "" {
			ev.Cluster = recs[rec].Cluster
		}
		e.decoded, e.decodedEv = rec, ev
	}
	ev := e.decodedEv
	if rule.outputObjects {
		ev.LoadObjects()
	}
	return newAlert(rule, ev, w), true
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

// Flush emits what is still due at the end of input: alerts a failed Emit
// kept, and eviction reports whose hour has passed. Windows hold nothing
// back: they fire on arrival.
func (e *Engine) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := e.sendUnsent(); err != nil {
		return err
	}
	e.dueEvictionAlerts()
	return e.sendUnsent()
}

// Advance moves the watermark to t if it is behind (live input, with t the
// event time that corresponds to now): state nothing can matter to any
// more is freed, and eviction reports whose hour has passed are emitted.
func (e *Engine) Advance(ctx context.Context, t time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.watermark = max(e.watermark, t.UnixNano())
	if err := e.sendUnsent(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, s := range e.shards {
		if e.watermark-s.swept >= sweepEvery {
			wg.Go(func() { s.sweep(e.watermark) })
		}
	}
	wg.Wait()
	if e.watermark-e.suppress.swept >= sweepEvery {
		e.suppress.sweep(e.watermark - e.lateness)
		e.suppress.swept = e.watermark
	}
	e.dueEvictionAlerts()
	return e.sendUnsent()
}

// Close drops the window state and takes its keys out of the
// vigil_detect_window_keys gauges, which the engines sharing a metrics set
// (one per partition) add to. The engine is not to be used after.
func (e *Engine) Close() {
	for _, s := range e.shards {
		for r, keys := range s.keys {
			e.m.keys(r).Add(-float64(keys.size()))
		}
		s.keys = nil
	}
}
