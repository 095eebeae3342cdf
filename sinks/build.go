package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/VictoriaMetrics/metrics"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// Option configures Build.
type Option func(*options)

type options struct {
	log     *slog.Logger
	set     *metrics.Set
	stdout  io.Writer
	nc      *natsgo.Conn
	js      jetstream.JetStream
	durable DurableOptions
	wrap    func(name string, s Sink) Sink
	// consumers are WithConsumer's, in order.
	consumers []consumer
}

type consumer struct {
	name string
	sink Sink
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithMetrics registers the per-sink metrics on set (default: a private set).
func WithMetrics(set *metrics.Set) Option { return func(o *options) { o.set = set } }

// WithStdout is where stdout sinks write (default os.Stdout).
func WithStdout(w io.Writer) Option { return func(o *options) { o.stdout = w } }

// WithNATS is the connection nats sinks without a url publish on (the
// embedded server's, in vigil serve).
func WithNATS(nc *natsgo.Conn) Option { return func(o *options) { o.nc = nc } }

// WithDurable selects the durable mode on js: alerts go to the stream
// VIGIL_ALERTS and each sink reads it with its durable consumer sink-<name>.
func WithDurable(js jetstream.JetStream, opts DurableOptions) Option {
	return func(o *options) { o.js, o.durable = js, opts }
}

// WithWrap wraps every sink Build makes (tests use it to observe or
// disturb a sink; it is applied inside the retry loop).
func WithWrap(f func(name string, s Sink) Sink) Option { return func(o *options) { o.wrap = f } }

// WithConsumer adds a consumer of every alert, delivered like a sink (the
// durable consumer sink-<name>, retries, at least once) but outside the
// sinks: list, routes and filters. vigil's responses use it.
func WithConsumer(name string, s Sink) Option {
	return func(o *options) { o.consumers = append(o.consumers, consumer{name, s}) }
}

// target is one configured sink with its delivery state.
type target struct {
	name   string
	sink   Sink
	retry  *retrier
	m      *sinkMetrics
	log    *slog.Logger
	batch  int
	buffer int
	block  bool
}

// Dispatcher routes alerts to the sinks and delivers them. Dispatch is
// called from one goroutine (the engine's Emit); Close once at the end.
type Dispatcher struct {
	router  *router
	targets []*target
	mem     *memory
	dur     *durable
	red     redactor
}

// Build makes the sinks of cfg and starts delivery: in memory by default,
// durable with WithDurable (then ctx bounds creating the streams and
// consumers). All configuration errors are returned joined, each with its
// field path.
func Build(ctx context.Context, cfg Config, opts ...Option) (*Dispatcher, error) {
	o := options{stdout: os.Stdout}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.set == nil {
		o.set = metrics.NewSet()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var errs []error
	var targets []*target
	for i, sc := range cfg.Sinks {
		// Validate has checked the type and the settings.
		typ, _ := lookupType(sc.Type)
		settings, _ := sc.settings(typ)
		s, err := typ.build(settings, buildEnv{name: sc.Name, stdout: o.stdout, nc: o.nc})
		if err != nil {
			errs = append(errs, sinkutil.Prefix(fmt.Sprintf("sinks[%d]", i), err))
			continue
		}
		if o.wrap != nil {
			s = o.wrap(sc.Name, s)
		}
		targets = append(targets, newTarget(sc, typ, s, o))
	}
	router := newRouter(cfg)
	for _, c := range o.consumers {
		if _, taken := router.filters[c.name]; taken || !nameRE.MatchString(c.name) {
			errs = append(errs, fmt.Errorf("consumer name %q: invalid or taken by a sink", c.name))
			continue
		}
		// An empty filter passes every alert; local: it blocks, never drops.
		router.filters[c.name] = Filter{}
		targets = append(targets, newTarget(SinkConfig{Name: c.name}, sinkType{local: true}, c.sink, o))
	}
	d := &Dispatcher{router: router, targets: targets}
	if err := errors.Join(errs...); err != nil {
		d.closeSinks()
		return nil, err
	}
	if o.js != nil {
		dur, err := newDurable(ctx, o.js, o.durable, targets, d.router, o.log)
		if err != nil {
			d.closeSinks()
			return nil, err
		}
		d.dur = dur
		return d, nil
	}
	d.mem = newMemory(targets, o.log)
	return d, nil
}

func newTarget(sc SinkConfig, typ sinkType, s Sink, o options) *target {
	log := o.log.With("sink", s.String())
	m := newSinkMetrics(o.set, sc.Name)
	t := &target{name: sc.Name, sink: s, m: m, log: log, batch: sc.BatchSize, buffer: sc.Buffer,
		retry: newRetrier(s, sc.Retry, m, log)}
	if b, ok := unwrap(s).(batcher); ok && (t.batch == 0 || t.batch > b.MaxBatch()) {
		t.batch = b.MaxBatch()
	}
	if t.batch == 0 {
		t.batch = 100
	}
	if t.buffer == 0 {
		t.buffer = DefaultBuffer
	}
	// on_full defaults to block for local output (see sinkType.local).
	t.block = sc.OnFull == "block" || (sc.OnFull == "" && typ.local)
	return t
}

// Dispatch hands the alerts to delivery, redacted before any sink sees
// them. In memory mode it returns at once (unless a stdout/file buffer is
// full) and each sink's goroutine redacts, off the caller's path; in durable
// mode the alerts are redacted here and Dispatch returns once they are
// stored in the stream, so the caller may then ack the events behind them.
func (d *Dispatcher) Dispatch(ctx context.Context, alerts ...detect.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	if d.dur == nil {
		return d.mem.dispatch(ctx, d.router, alerts)
	}
	red := make([]detect.Alert, len(alerts))
	for i := range alerts {
		red[i] = d.red.redact(alerts[i])
	}
	return d.dur.dispatch(ctx, red)
}

// Close stops delivery: in memory mode after the buffers are flushed (or
// ctx ends), in durable mode at once, leaving what is undelivered in the
// stream for the next process. Then it closes the sinks' files and
// connections.
func (d *Dispatcher) Close(ctx context.Context) error {
	var err error
	if d.dur != nil {
		err = d.dur.close(ctx)
	} else if d.mem != nil {
		err = d.mem.close(ctx)
	}
	return errors.Join(err, d.closeSinks())
}

func (d *Dispatcher) closeSinks() error {
	var errs []error
	for _, t := range d.targets {
		if c, ok := unwrap(t.sink).(closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", t.sink, err))
			}
		}
	}
	return errors.Join(errs...)
}

// unwrap returns the innermost sink of a WithWrap wrapper that exposes
// Unwrap() Sink.
func unwrap(s Sink) Sink {
	for {
		u, ok := s.(interface{ Unwrap() Sink })
		if !ok {
			return s
		}
		s = u.Unwrap()
	}
}
