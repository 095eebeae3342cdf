package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/detect"
	natssink "github.com/vigil-k8s/vigil/sinks/nats"
)

// Names of the JetStream streams of the durable mode.
const (
	AlertStream        = "VIGIL_ALERTS"
	AlertSubjectPrefix = "vigil.alerts."
	DeadLetterStream   = "VIGIL_DEADLETTER"
	DeadLetterPrefix   = "vigil.deadletter."
)

// Defaults of the durable mode.
const (
	DefaultAlertRetention = 7 * 24 * time.Hour
	DefaultAckWait        = 30 * time.Second
	DefaultFetchWait      = 500 * time.Millisecond
	// dedupWindow makes a republished alert (same fingerprint, as after a
	// redelivered event) a no-op.
	dedupWindow = 10 * time.Minute
)

// Headers of dead-lettered messages.
const (
	HeaderSink   = "Vigil-Sink"
	HeaderReason = "Vigil-Reason"
)

// DurableOptions tune the durable mode.
type DurableOptions struct {
	// Retention is how long the streams keep messages (default 7 days):
	// a sink down for longer loses its oldest alerts.
	Retention time.Duration
	// AckWait is how long a consumer may hold a batch before JetStream
	// redelivers it (default 30s); retries extend it while they wait.
	AckWait time.Duration
	// FetchWait bounds how long a consumer waits to fill a batch
	// (default 500ms).
	FetchWait time.Duration
	// Replicas of the streams on a clustered JetStream (default 1).
	Replicas int
}

func (o *DurableOptions) defaults() {
	if o.Retention == 0 {
		o.Retention = DefaultAlertRetention
	}
	if o.AckWait == 0 {
		o.AckWait = DefaultAckWait
	}
	if o.FetchWait == 0 {
		o.FetchWait = DefaultFetchWait
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
}

// ensureStreams creates or updates the alert stream VIGIL_ALERTS
// (subjects vigil.alerts.<rule id>, file storage) and the dead-letter
// stream VIGIL_DEADLETTER (vigil.deadletter.<sink>).
func ensureStreams(ctx context.Context, js jetstream.JetStream, o DurableOptions) error {
	o.defaults()
	for _, sc := range []jetstream.StreamConfig{
		{Name: AlertStream, Subjects: []string{AlertSubjectPrefix + ">"}, Storage: jetstream.FileStorage,
			Retention: jetstream.LimitsPolicy, MaxAge: o.Retention, Duplicates: dedupWindow,
			Replicas: o.Replicas, Description: "vigil alerts, read by one durable consumer per sink"},
		{Name: DeadLetterStream, Subjects: []string{DeadLetterPrefix + ">"}, Storage: jetstream.FileStorage,
			Retention: jetstream.LimitsPolicy, MaxAge: o.Retention, Replicas: o.Replicas,
			Description: "vigil alerts a sink rejected, with the reason in the Vigil-Reason header"},
	} {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("create stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// AlertSubject is the subject an alert of rule is published on.
func AlertSubject(rule string) string { return AlertSubjectPrefix + natssink.Token(rule) }

// durable is the JetStream delivery mode.
type durable struct {
	js        jetstream.JetStream
	log       *slog.Logger
	opts      DurableOptions
	consumers []*durableConsumer
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	// mu guards closed against Dispatch racing Close.
	mu     sync.RWMutex
	closed bool
}

func newDurable(ctx context.Context, js jetstream.JetStream, opts DurableOptions, targets []*target, r *router, log *slog.Logger) (*durable, error) {
	opts.defaults()
	if err := ensureStreams(ctx, js, opts); err != nil {
		return nil, err
	}
	type started struct {
		t    *target
		c    jetstream.Consumer
		name string
	}
	var cons []started
	for _, t := range targets {
		cfg := jetstream.ConsumerConfig{
			Durable:       "sink-" + t.name,
			Description:   "vigil sink " + t.sink.String(),
			FilterSubject: AlertSubjectPrefix + ">",
			// A sink added later starts with new alerts instead of
			// replaying the whole retention.
			DeliverPolicy: jetstream.DeliverNewPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       opts.AckWait,
			MaxAckPending: 10 * t.batch,
			MaxDeliver:    -1,
		}
		// An existing consumer restarts just after its ack floor: alerts a
		// killed process had taken but not delivered come back at once,
		// not after AckWait. Only this process consumes, so nothing is
		// taken from a peer.
		if old, err := js.Consumer(ctx, AlertStream, cfg.Durable); err == nil {
			info, err := old.Info(ctx)
			if err != nil {
				return nil, fmt.Errorf("read consumer of sink %s: %w", t.name, err)
			}
			if err := js.DeleteConsumer(ctx, AlertStream, cfg.Durable); err != nil {
				return nil, fmt.Errorf("reset consumer of sink %s: %w", t.name, err)
			}
			cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
			cfg.OptStartSeq = info.AckFloor.Stream + 1
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("look up consumer of sink %s: %w", t.name, err)
		}
		c, err := js.CreateConsumer(ctx, AlertStream, cfg)
		if err != nil {
			return nil, fmt.Errorf("create consumer for sink %s: %w", t.name, err)
		}
		cons = append(cons, started{t, c, cfg.Durable})
	}
	runCtx, cancel := context.WithCancel(context.Background())
	d := &durable{js: js, log: log, opts: opts, cancel: cancel}
	for _, c := range cons {
		dc := &durableConsumer{d: d, t: c.t, c: c.c, name: c.name, r: r}
		d.consumers = append(d.consumers, dc)
		d.wg.Go(func() { dc.run(runCtx) })
	}
	return d, nil
}

// dispatch stores the alerts in the stream and returns once JetStream has
// acknowledged every one: after that the events behind them may be acked.
// The fingerprint is the message id, so publishing an alert twice within
// the dedup window stores it once.
func (d *durable) dispatch(ctx context.Context, alerts []detect.Alert) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return errors.New("dispatch alerts: dispatcher is closed")
	}
	futures := make([]jetstream.PubAckFuture, 0, len(alerts))
	for i := range alerts {
		b, err := alerts[i].AppendJSON(nil)
		if err != nil {
			return fmt.Errorf("encode alert %s: %w", alerts[i].Rule, err)
		}
		m := nats.NewMsg(AlertSubject(alerts[i].Rule))
		m.Data = b
		opts := []jetstream.PublishOpt{jetstream.WithExpectStream(AlertStream)}
		if alerts[i].Fingerprint != "" {
			opts = append(opts, jetstream.WithMsgID(alerts[i].Fingerprint))
		}
		f, err := d.js.PublishMsgAsync(m, opts...)
		if err != nil {
			return fmt.Errorf("publish alert %s: %w", alerts[i].Rule, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish alert: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("publish alert: %w", ctx.Err())
		}
	}
	return nil
}

// close stops the consumers. A delivery in flight is aborted and its batch
// handed back to JetStream (nak), so the next process delivers it: delivery
// is at least once, and receivers see the fingerprint to deduplicate.
func (d *durable) close(ctx context.Context) error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	stopped := make(chan struct{})
	go func() { d.wg.Wait(); close(stopped) }()
	d.cancel()
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		<-stopped
		return fmt.Errorf("stop sink consumers: %w", ctx.Err())
	}
}

// durableConsumer feeds one sink from its durable consumer.
type durableConsumer struct {
	d *durable
	t *target
	c jetstream.Consumer
	// name is the durable consumer's name, sink-<sink name>.
	name string
	r    *router
	// lagAt is when the pending count was last read from the server.
	lagAt time.Time
}

type delivery struct {
	msg   jetstream.Msg
	alert detect.Alert
	at    time.Time
}

func (dc *durableConsumer) run(ctx context.Context) {
	log := dc.t.log
	for ctx.Err() == nil {
		batch, err := dc.c.Fetch(dc.t.batch, jetstream.FetchMaxWait(dc.d.opts.FetchWait))
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("fetch alerts", "err", err)
				_ = sleepCtx(ctx, time.Second)
			}
			continue
		}
		var ds []delivery
		for m := range batch.Messages() {
			var a detect.Alert
			if err := json.Unmarshal(m.Data(), &a); err != nil {
				dc.deadLetter(m, fmt.Errorf("decode alert: %w", err))
				continue
			}
			if !dc.r.wants(dc.t.name, &a) {
				_ = m.Ack()
				continue
			}
			at := time.Now()
			if md, err := m.Metadata(); err == nil {
				at = md.Timestamp
			}
			ds = append(ds, delivery{msg: m, alert: a, at: at})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			log.Warn("fetch alerts", "err", err)
		}
		dc.updateLag(ctx)
		if len(ds) == 0 {
			continue
		}
		dc.deliver(ctx, ds)
	}
}

func (dc *durableConsumer) deliver(ctx context.Context, ds []delivery) {
	alerts := make([]detect.Alert, len(ds))
	for i := range ds {
		alerts[i] = ds[i].alert
	}
	// Keep the batch ours while retries wait: each wait first extends the
	// ack deadline, and waits longer than AckWait/2 are split so it never
	// lapses.
	inProgress := func() {
		for _, d := range ds {
			_ = d.msg.InProgress()
		}
	}
	r := *dc.t.retry
	r.sleep = func(ctx context.Context, d time.Duration) error {
		step := dc.d.opts.AckWait / 2
		for d > 0 {
			s := min(d, step)
			if err := sleepCtx(ctx, s); err != nil {
				return err
			}
			d -= s
			inProgress()
		}
		return nil
	}
	err := r.deliver(ctx, alerts, inProgress)
	var perm *PermanentError
	switch {
	case err == nil:
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, d := range ds {
			if aerr := d.msg.DoubleAck(actx); aerr != nil {
				dc.t.log.Warn("ack delivered alert", "err", aerr, "rule", d.alert.Rule)
			}
			dc.t.m.delay.UpdateDuration(d.at)
		}
	case errors.As(err, &perm):
		for _, d := range ds {
			dc.deadLetter(d.msg, perm.Err)
		}
	default:
		// Shutting down: hand the batch back for the next process.
		for _, d := range ds {
			_ = d.msg.Nak()
		}
	}
}

// deadLetter stores m in the dead-letter stream with the reason, then acks
// it. If the dead-letter publish fails, m is not acked and comes back.
func (dc *durableConsumer) deadLetter(m jetstream.Msg, reason error) {
	dl := nats.NewMsg(DeadLetterPrefix + dc.t.name)
	dl.Data = m.Data()
	dl.Header.Set(HeaderSink, dc.t.name)
	dl.Header.Set(HeaderReason, reason.Error())
	dl.Header.Set("Vigil-Subject", m.Subject())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := dc.d.js.PublishMsg(ctx, dl); err != nil {
		dc.t.log.Error("dead-letter alert", "err", err, "reason", reason)
		_ = m.NakWithDelay(dc.d.opts.AckWait)
		return
	}
	dc.t.m.deadLettered.Inc()
	dc.t.log.Error("alert dead-lettered", "reason", reason, "stream", DeadLetterStream)
	_ = m.Ack()
}

// updateLag refreshes the pending gauge from the consumer's info, at most
// every few seconds.
func (dc *durableConsumer) updateLag(ctx context.Context) {
	if time.Since(dc.lagAt) < 2*time.Second {
		return
	}
	dc.lagAt = time.Now()
	info, err := dc.c.Info(ctx)
	if err != nil {
		return
	}
	dc.t.m.pending.Store(int64(info.NumPending) + int64(info.NumAckPending))
}
