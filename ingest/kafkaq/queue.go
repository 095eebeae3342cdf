package kafkaq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/gate"
	"github.com/vigil-k8s/vigil/ingest/internal/pending"
	"github.com/vigil-k8s/vigil/ingest/internal/qdedup"
	"github.com/vigil-k8s/vigil/ingest/internal/qmetrics"
	"github.com/vigil-k8s/vigil/ingest/partition"
)

// Queue is the queue on Kafka. It implements ingest.Queue,
// ingest.DeadLetterer, partition.Reader and Replay.
type Queue struct {
	opts   Options
	log    *slog.Logger
	keyer  *partition.Keyer
	tr     *kafka.Transport
	client *kafka.Client
	dialer *kafka.Dialer
	w, dlw *kafka.Writer
	group  *kafka.ConsumerGroup

	publishes gate.Gate
	closeOnce sync.Once
	done      chan struct{}
	bg        sync.WaitGroup

	// items carries batches and ownership changes to Read.
	items chan item
	// gen is the current generation, through which acks commit; owned its
	// partitions.
	genMu sync.Mutex
	gen   *kafka.Generation
	owned []int
	// high is the highest offset committed per partition since it was
	// gained: a late ack of an older batch must not move it back.
	high map[int]int64
	// first is closed once the first generation is known.
	first     chan struct{}
	firstOnce sync.Once
	// closers close what Snapshots and SentSet opened, at Close.
	closeMu sync.Mutex
	closers []func() error

	dedup *qdedup.Set

	pending pending.Estimate
	m       *qmetrics.Metrics
}

var (
	_ ingest.Queue        = (*Queue)(nil)
	_ ingest.DeadLetterer = (*Queue)(nil)
	_ partition.Reader    = (*Queue)(nil)
)

// Open creates the topics when missing, joins the consumer group and waits
// for its first assignment, so that Replay knows this replica's
// partitions.
func Open(ctx context.Context, opts Options) (*Queue, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	keyer, err := partition.NewKeyer(opts.PartitionKey)
	if err != nil {
		return nil, err
	}
	q := &Queue{opts: opts, log: opts.Logger, keyer: keyer, done: make(chan struct{}),
		items: make(chan item, 16), first: make(chan struct{}), high: map[int]int64{}}
	q.m = qmetrics.New(opts.Metrics, opts.Now, q.Pending).Partitioned()
	q.dedup = qdedup.New(opts.DedupMaxKeys, opts.DedupWindow, q.m)
	q.pending = pending.Estimate{Sample: q.samplePending, Log: q.log}
	if err := q.setup(ctx); err != nil {
		q.shutdown()
		return nil, err
	}
	return q, nil
}

func (q *Queue) setup(ctx context.Context) error {
	o := q.opts
	q.tr = &kafka.Transport{TLS: o.TLS, SASL: o.SASL, ClientID: "vigil", DialTimeout: 10 * time.Second, Dial: o.Dial}
	q.client = &kafka.Client{Addr: kafka.TCP(o.Brokers...), Transport: q.tr, Timeout: 10 * time.Second}
	q.dialer = &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: o.TLS, SASLMechanism: o.SASL, ClientID: "vigil",
		DialFunc: o.Dial}
	if err := q.ensureTopics(ctx); err != nil {
		return err
	}
	q.w = &kafka.Writer{Addr: kafka.TCP(o.Brokers...), Topic: o.Topic, Transport: q.tr,
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		Compression:  kafka.Lz4,
		BatchBytes:   int64(o.BatchBytes),
		BatchSize:    1000,
		// WriteMessages returns once its batches are written: a batch not
		// full waits this long for other publishers' messages.
		BatchTimeout: 2 * time.Millisecond,
		MaxAttempts:  3,
		WriteTimeout: 30 * time.Second,
	}
	q.dlw = &kafka.Writer{Addr: kafka.TCP(o.Brokers...), Topic: o.Topic + DeadLetterSuffix, Transport: q.tr,
		RequiredAcks: kafka.RequireAll, BatchBytes: int64(o.BatchBytes), BatchTimeout: time.Millisecond}
	if err := q.pending.Take(ctx); err != nil {
		return err
	}
	var err error
	q.group, err = kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: o.Group, Brokers: o.Brokers, Dialer: q.dialer, Topics: []string{o.Topic},
		SessionTimeout:    o.SessionTimeout,
		HeartbeatInterval: o.SessionTimeout / 5,
		RebalanceTimeout:  o.SessionTimeout,
		JoinGroupBackoff:  time.Second,
		StartOffset:       kafka.FirstOffset,
		Timeout:           10 * time.Second,
		ErrorLogger:       kafka.LoggerFunc(func(f string, a ...any) { q.log.Warn(fmt.Sprintf(f, a...), "component", "kafka group") }),
	})
	if err != nil {
		return fmt.Errorf("join consumer group %s: %w", o.Group, err)
	}
	q.bg.Go(q.follow)
	q.bg.Go(func() { q.pending.Run(q.done) })
	select {
	case <-q.first:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("join consumer group %s: no assignment: %w", o.Group, ctx.Err())
	}
}

// ensureTopics creates the event and dead-letter topics when missing.
func (q *Queue) ensureTopics(ctx context.Context) error {
	o := q.opts
	res, err := q.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: o.Topic, NumPartitions: o.Partitions, ReplicationFactor: o.Replication},
		{Topic: o.Topic + DeadLetterSuffix, NumPartitions: 1, ReplicationFactor: o.Replication},
	}})
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for topic, terr := range res.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", topic, terr)
		}
	}
	md, err := q.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{o.Topic}})
	if err != nil {
		return fmt.Errorf("read topic %s: %w", o.Topic, err)
	}
	for _, t := range md.Topics {
		if t.Error != nil {
			return fmt.Errorf("read topic %s: %w", o.Topic, t.Error)
		}
		if len(t.Partitions) != o.Partitions {
			q.log.Info("topic has its own partition count", "topic", o.Topic, "partitions", len(t.Partitions))
			q.opts.Partitions = len(t.Partitions)
		}
	}
	return nil
}

// onClose has Close call c.
func (q *Queue) onClose(c func() error) {
	q.closeMu.Lock()
	defer q.closeMu.Unlock()
	q.closers = append(q.closers, c)
}

// MaxRecordSize is the largest event a Publish accepts.
func (q *Queue) MaxRecordSize() int { return q.opts.BatchBytes - recordSlack }

// Owned lists the partitions of this replica in the current generation.
func (q *Queue) Owned() []int {
	q.genMu.Lock()
	defer q.genMu.Unlock()
	return slices.Clone(q.owned)
}

// Drained reports whether the partitions of this replica have every event
// committed.
func (q *Queue) Drained(ctx context.Context) (bool, error) {
	if len(q.items) > 0 {
		return false, nil
	}
	lag, err := q.lag(ctx, q.Owned())
	if err != nil {
		return false, err
	}
	for _, l := range lag {
		if l > 0 {
			return false, nil
		}
	}
	return true, nil
}

// Pending is the estimate of published and uncommitted event bytes.
func (q *Queue) Pending() int64 { return q.pending.Bytes() }

// samplePending is the lag of the group over all partitions; it also
// sets the gauges of this replica's partitions.
func (q *Queue) samplePending(ctx context.Context) (int64, error) {
	lag, err := q.lag(ctx, nil)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, l := range lag {
		total += l
	}
	for _, p := range q.Owned() {
		q.m.Partition(p).Pending.Store(lag[p])
	}
	return total, nil
}

// lag returns, for the given partitions (nil: all), the messages after
// the group's committed offset.
func (q *Queue) lag(ctx context.Context, parts []int) (map[int]int64, error) {
	if parts == nil {
		for p := range q.opts.Partitions {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return nil, nil
	}
	reqs := make([]kafka.OffsetRequest, 0, 2*len(parts))
	for _, p := range parts {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	offs, err := q.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{q.opts.Topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", q.opts.Topic, err)
	}
	committed, err := q.committed(ctx, parts)
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, po := range offs.Topics[q.opts.Topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", q.opts.Topic, po.Partition, po.Error)
		}
		from, ok := committed[po.Partition]
		if !ok || from < po.FirstOffset {
			from = po.FirstOffset
		}
		out[po.Partition] = max(po.LastOffset-from, 0)
	}
	return out, nil
}

// committed returns the group's committed offsets of parts; a partition
// without one is left out.
func (q *Queue) committed(ctx context.Context, parts []int) (map[int]int64, error) {
	res, err := q.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: q.opts.Group,
		Topics: map[string][]int{q.opts.Topic: parts}})
	if err == nil {
		err = res.Error
	}
	out := map[int]int64{}
	if errors.Is(err, kafka.GroupIdNotFound) {
		return out, nil // a group that never committed
	}
	if err != nil {
		return nil, fmt.Errorf("read offsets of group %s: %w", q.opts.Group, err)
	}
	for _, p := range res.Topics[q.opts.Topic] {
		if p.Error == nil && p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// Close leaves the group, so that the others take this replica's
// partitions at once, and closes the connections. What was read and not
// committed is read again by the partitions' next owner. Publish calls in
// progress finish first, unless ctx ends before.
func (q *Queue) Close(ctx context.Context) error {
	var err error
	q.closeOnce.Do(func() {
		select {
		case <-q.publishes.Shut():
		case <-ctx.Done():
		}
		err = q.shutdown()
	})
	return err
}

func (q *Queue) shutdown() error {
	select {
	case <-q.done:
	default:
		close(q.done)
	}
	var errs []error
	if q.group != nil {
		// Ends the generation, whose readers stop, and leaves the group.
		if err := q.group.Close(); err != nil {
			errs = append(errs, fmt.Errorf("leave group: %w", err))
		}
	}
	q.bg.Wait()
	q.closeMu.Lock()
	for _, c := range q.closers {
		if err := c(); err != nil {
			errs = append(errs, err)
		}
	}
	q.closers = nil
	q.closeMu.Unlock()
	for _, w := range []*kafka.Writer{q.w, q.dlw} {
		if w != nil {
			if err := w.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close writer: %w", err))
			}
		}
	}
	if q.tr != nil {
		q.tr.CloseIdleConnections()
	}
	return errors.Join(errs...)
}
