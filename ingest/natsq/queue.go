package natsq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/frames"
	"github.com/vigil-k8s/vigil/ingest/internal/gate"
	"github.com/vigil-k8s/vigil/ingest/internal/pending"
	"github.com/vigil-k8s/vigil/ingest/internal/qdedup"
	"github.com/vigil-k8s/vigil/ingest/internal/qmetrics"
	"github.com/vigil-k8s/vigil/ingest/partition"
)

// Queue is the queue on an external NATS JetStream. It implements
// ingest.Queue, ingest.DeadLetterer, partition.Reader and Replay.
type Queue struct {
	opts Options
	log  *slog.Logger
	// nc carries consumption and the JetStream API; pubNC Publish and
	// DeadLetter, so that deliveries and acks do not wait behind large
	// publishes. ownConns says the queue opened them.
	nc, pubNC *nats.Conn
	ownConns  bool
	js, pubJS jetstream.JetStream
	events    jetstream.Stream

	keyer      *partition.Keyer
	bufs       frames.Pool
	maxPayload int

	publishes gate.Gate
	closeOnce sync.Once
	done      chan struct{}
	bg        sync.WaitGroup // the pending sampler

	// items carries deliveries and ownership changes from the partitions
	// to Read, which gathers them by partition in backlog.
	items   chan item
	backlog backlog
	parts   []*part
	own     *owner
	// out holds the batches handed out and not acknowledged, which Close
	// gives back.
	outMu sync.Mutex
	out   map[*delivery]struct{}

	dedup *qdedup.Set

	pending pending.Estimate
	m       *qmetrics.Metrics
	trimmed *metrics.Counter
}

var (
	_ ingest.Queue        = (*Queue)(nil)
	_ ingest.DeadLetterer = (*Queue)(nil)
	_ partition.Reader    = (*Queue)(nil)
)

// Open connects, creates or updates the streams, the partition consumers
// and the service by which replicas find each other, finds the live
// replicas and starts pulling this replica's partitions.
func Open(ctx context.Context, opts Options) (*Queue, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	keyer, err := partition.NewKeyer(opts.PartitionKey)
	if err != nil {
		return nil, err
	}
	q := &Queue{opts: opts, log: opts.Logger, keyer: keyer, done: make(chan struct{}),
		items: make(chan item, 256),
		out:   map[*delivery]struct{}{}}
	q.m = qmetrics.New(opts.Metrics, opts.Now, q.Pending).Partitioned()
	q.dedup = qdedup.New(opts.DedupMaxKeys, opts.DedupWindow, q.m)
	q.trimmed = opts.Metrics.NewCounter("vigil_queue_trimmed_messages_total")
	q.pending = pending.Estimate{Sample: q.samplePending, Log: q.log}
	if err := q.setup(ctx); err != nil {
		q.shutdown()
		return nil, err
	}
	return q, nil
}

func (q *Queue) setup(ctx context.Context) error {
	if q.opts.Conn != nil {
		q.nc, q.pubNC = q.opts.Conn, q.opts.Conn
	} else {
		q.ownConns = true
		var err error
		if q.nc, err = connect(&q.opts, "vigil "+q.opts.Member); err != nil {
			return err
		}
		if q.pubNC, err = connect(&q.opts, "vigil-publish "+q.opts.Member); err != nil {
			return err
		}
	}
	var err error
	if q.js, err = jetstream.New(q.nc); err != nil {
		return fmt.Errorf("open jetstream: %w", err)
	}
	// The async publish window bounds memory held by unacknowledged
	// publishes; past it PublishMsgAsync stalls, which Publish retries.
	if q.pubJS, err = jetstream.New(q.pubNC, jetstream.WithPublishAsyncMaxPending(256),
		jetstream.WithPublishAsyncTimeout(30*time.Second)); err != nil {
		return fmt.Errorf("open jetstream: %w", err)
	}
	q.maxPayload = int(q.nc.MaxPayload())
	if q.opts.MaxPayload > 0 {
		q.maxPayload = min(q.maxPayload, q.opts.MaxPayload)
	}
	if q.maxPayload < 64<<10 {
		return fmt.Errorf("nats max payload %d is too small, want at least 64 KiB", q.maxPayload)
	}
	if err := q.ensureStreams(ctx); err != nil {
		return err
	}
	q.parts = make([]*part, q.opts.Partitions)
	for n := range q.parts {
		c, err := q.events.CreateOrUpdateConsumer(ctx, consumerConfig(n, q.opts))
		if err != nil {
			return fmt.Errorf("create consumer %s%d: %w", consumerPrefix, n, err)
		}
		q.parts[n] = &part{n: n, cons: c, g: q.m.Partition(n)}
	}
	if err := q.pending.Take(ctx); err != nil {
		return err
	}
	if q.own, err = newOwner(ctx, q); err != nil {
		return err
	}
	q.bg.Go(func() { q.pending.Run(q.done) })
	q.bg.Go(q.trimLoop)
	return nil
}

// ensureStreams creates or updates the event and dead-letter streams; it
// refuses an event stream partitioned otherwise, since changing the count
// would move keys between partitions under running replicas.
func (q *Queue) ensureStreams(ctx context.Context) error {
	cfg := jetstream.StreamConfig{
		Name:        EventStream,
		Description: "audit events, partitioned by key, waiting for and kept after detection",
		Subjects:    []string{subjectIn + "*"},
		SubjectTransform: &jetstream.SubjectTransformConfig{Source: subjectIn + "*",
			Destination: subjectStored + "{{partition(" + strconv.Itoa(q.opts.Partitions) + ",1)}}.{{wildcard(1)}}"},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		// Refuse new data when full instead of dropping the oldest, which
		// may not be processed yet.
		Discard:    jetstream.DiscardNew,
		MaxAge:     q.opts.Retention,
		MaxBytes:   q.opts.MaxBytes,
		MaxMsgSize: int32(q.maxPayload),
		Replicas:   q.opts.Replicas,
	}
	old, err := q.js.Stream(ctx, EventStream)
	switch {
	case err == nil:
		oc := old.CachedInfo().Config
		if oc.SubjectTransform == nil || oc.SubjectTransform.Destination != cfg.SubjectTransform.Destination {
			have := "none"
			if oc.SubjectTransform != nil {
				have = oc.SubjectTransform.Destination
			}
			return fmt.Errorf("stream %s exists with partitioning %s, want %s: the partition count cannot change under a running stream (drain it and delete the stream first)",
				EventStream, have, cfg.SubjectTransform.Destination)
		}
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("look up stream %s: %w", EventStream, err)
	}
	if q.events, err = q.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("create stream %s: %w", EventStream, err)
	}
	if _, err := q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "items refused inside otherwise valid webhook requests",
		Subjects:    []string{DeadSubject},
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      DefaultDeadLetterAge,
		MaxBytes:    1 << 30,
		MaxMsgSize:  int32(q.maxPayload),
		Replicas:    q.opts.Replicas,
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", DeadLetterStream, err)
	}
	return nil
}

// consumerConfig is the durable consumer of partition n. The pinned-client
// policy lets one of the replicas that pull from it have its messages.
func consumerConfig(n int, o Options) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        consumerPrefix + strconv.Itoa(n),
		Description:    "detection of partition " + strconv.Itoa(n),
		FilterSubject:  partitionSubject(n),
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        o.AckWait,
		MaxAckPending:  1024,
		MaxDeliver:     -1,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{priorityGroup},
		PinnedTTL:      o.PinnedTTL,
	}
}

func partitionSubject(n int) string { return subjectStored + strconv.Itoa(n) + ".*" }

// MaxRecordSize is the largest event a Publish accepts.
func (q *Queue) MaxRecordSize() int { return q.maxPayload - frameSlack }

// Partitions is the number of partitions.
func (q *Queue) Partitions() int { return q.opts.Partitions }

// Replicas is the number of copies the streams keep, for the alert
// streams that share the cluster.
func (q *Queue) Replicas() int { return q.opts.Replicas }

// JetStream returns the client, for components that keep their state on
// the same cluster (the alert streams of the sinks).
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

// Conn returns the connection, for components that publish on it (the
// nats alert sink).
func (q *Queue) Conn() *nats.Conn { return q.nc }

// Drained reports whether the partitions this replica reads have nothing
// waiting and nothing unacknowledged.
func (q *Queue) Drained(ctx context.Context) (bool, error) {
	if len(q.items) > 0 || q.backlog.len() > 0 {
		return false, nil
	}
	for _, p := range q.parts {
		if !p.reading() {
			continue
		}
		ci, err := p.cons.Info(ctx)
		if err != nil {
			return false, fmt.Errorf("read consumer %s%d: %w", consumerPrefix, p.n, err)
		}
		if ci.NumPending > 0 || ci.NumAckPending > 0 {
			return false, nil
		}
	}
	return true, nil
}

// Close stops this replica's reading, hands what it took and did not
// acknowledge back to the stream, gives up its partitions so another
// replica takes them at once, and closes the connections. Publish calls in
// progress finish first, unless ctx ends before.
func (q *Queue) Close(ctx context.Context) error {
	q.closeOnce.Do(func() {
		select {
		case <-q.publishes.Shut():
		case <-ctx.Done():
		}
		q.shutdown()
	})
	return nil
}

func (q *Queue) shutdown() {
	select {
	case <-q.done:
	default:
		close(q.done)
	}
	if q.own != nil {
		q.own.stop()
	}
	q.bg.Wait()
	// Stop pulling, then give back what was delivered and not processed.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range q.parts {
		if p != nil {
			p.stop(ctx.Done())
		}
	}
	q.nakWaiting()
	for _, p := range q.parts {
		if p != nil && p.wasPinned() {
			// Another replica pulling it is pinned at once instead of
			// after PinnedTTL.
			if err := q.events.UnpinConsumer(ctx, consumerPrefix+strconv.Itoa(p.n), priorityGroup); err != nil {
				q.log.Debug("unpin partition", "partition", p.n, "err", err)
			}
		}
	}
	if q.ownConns {
		for _, nc := range []*nats.Conn{q.pubNC, q.nc} {
			if nc != nil {
				nc.FlushTimeout(2 * time.Second) // the naks and unpins
				nc.Close()
			}
		}
	}
}
