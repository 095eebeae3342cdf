package jetstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
)

// Names of the JetStream objects the queue uses.
const (
	EventStream  = "VIGIL_EVENTS"
	EventSubject = "vigil.events"
	// DeadLetterStream holds refused webhook items; the alert sinks own
	// VIGIL_DEADLETTER for alerts they could not deliver.
	DeadLetterStream = "VIGIL_EVENTS_DEADLETTER"
	DeadSubject      = "vigil.events.deadletter"
	ConsumerName     = "detect"
	HeaderCluster    = "Vigil-Cluster"
	HeaderReason     = "Vigil-Reason"
	// HeaderEncoding is "s2" on an event message whose body is compressed
	// (S2 block format); without it the body is the frames as they are.
	HeaderEncoding = "Vigil-Encoding"
	encodingS2     = "s2"
	// headerTruncated is the size of a dead-lettered item stored cut to
	// the payload limit.
	headerTruncated = "Vigil-Truncated"
)

// Defaults for Options.
const (
	DefaultMaxPayload      = 8 << 20
	DefaultMaxPendingBytes = 1 << 30
	DefaultMaxBytes        = 10 << 30
	DefaultRetention       = time.Hour
	DefaultMaxBatch        = 4000
	DefaultDeadLetterAge   = 7 * 24 * time.Hour
	// frameSlack leaves room in a message for headers and frame lengths.
	frameSlack = 4 << 10
	// rawTarget is how much framed event data Publish puts in a message
	// before compressing it (see split).
	rawTarget = 256 << 10
	// maxPooled is the largest buffer kept for reuse.
	maxPooled = 1 << 20
)

// Options configure the embedded queue.
type Options struct {
	// Dir is the store directory (required).
	Dir string
	// SyncAlways makes the server sync every write to disk (power-loss
	// durability); by default it syncs every two minutes (crash durability).
	SyncAlways bool
	// MaxPayload is the largest message (default 8 MiB); an entry larger
	// than MaxRecordSize is refused.
	MaxPayload int
	// MaxPendingBytes is how much published and not yet acknowledged event
	// data the queue holds before Publish returns ErrFull (default 1 GiB).
	MaxPendingBytes int64
	// MaxBytes caps the event stream on disk (default 10 GiB); a full
	// stream refuses new messages rather than dropping unprocessed ones.
	MaxBytes int64
	// Retention is how long events stay in the stream (default 1h); it must
	// cover the span Replay re-reads after a crash.
	Retention time.Duration
	// MaxBatch is the most records one Read returns (default 4000).
	MaxBatch int
	// DedupWindow and DedupMaxKeys bound de-duplication (ingest defaults).
	DedupWindow  time.Duration
	DedupMaxKeys int
	// AckWait is how long a delivered message may stay unacknowledged
	// before the server delivers it again (default 2m).
	AckWait time.Duration
	Logger  *slog.Logger
	Metrics *metrics.Set
	// Now is the clock for de-duplication and lag (default time.Now).
	Now func() time.Time
}

func (o *Options) setDefaults() error {
	if o.Dir == "" {
		return errors.New("queue store directory is not set")
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if o.MaxPayload < 64<<10 {
		return fmt.Errorf("queue max payload %d is too small, want at least 64 KiB", o.MaxPayload)
	}
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.AckWait <= 0 {
		o.AckWait = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Queue is the embedded JetStream queue. It implements ingest.Queue and
// ingest.DeadLetterer.
type Queue struct {
	opts Options
	log  *slog.Logger
	ns   *server.Server
	lock *os.File // held while the store is open (lockDir)
	nc   *nats.Conn
	js   jetstream.JetStream
	// pubNC and pubJS carry Publish and DeadLetter only. A connection is
	// one ordered pipe: sharing it, the consumer's deliveries and acks
	// would wait behind every large publish in flight.
	pubNC *nats.Conn
	pubJS jetstream.JetStream
	// bufs holds byte buffers for framing, compressing and decompressing
	// messages. A published message's buffer comes back once its publish
	// is acknowledged (the client may resend it until then), a decompressed
	// one once its batch is acknowledged (records alias it).
	bufs   sync.Pool
	events jetstream.Stream
	cons   jetstream.Consumer
	cc     jetstream.ConsumeContext

	// msgs carries delivered messages from the consume callback to Read;
	// its capacity and the pull limit bound the memory held by delivery.
	msgs chan jetstream.Msg
	done chan struct{}
	// closing is set when Close starts: Publish then fails with ErrClosed.
	closing   atomic.Bool
	closeOnce sync.Once
	// publishes tracks Publish calls in progress so Close waits for them.
	publishes sync.WaitGroup

	// stored is the size of event messages stored and not acknowledged;
	// reserved the size of those being published.
	stored, reserved atomic.Int64

	// floor is the last sequence detection had acknowledged when the
	// queue opened.
	floor uint64

	dedupMu sync.Mutex // Ack may run on another goroutine than Read
	dedup   *ingest.Dedup

	m queueMetrics
}

type queueMetrics struct {
	set                                    *metrics.Set
	published, publishedMsgs, full, stalls *metrics.Counter
	read, redelivered, dead, corrupt       *metrics.Counter
	dedupKeys                              *metrics.Gauge
	clusters                               sync.Map // cluster name -> *clusterGauges
	now                                    func() time.Time
}

// clusterGauges hold a cluster's queue gauges: its events stored and not
// yet taken by Read (counted from this start of the process, never below
// zero), and the write time of the newest message taken (unix nanoseconds).
type clusterGauges struct {
	queued, taken atomic.Int64
}

// take records that Read took n events of a message written at written.
func (g *clusterGauges) take(n int64, written time.Time) {
	g.taken.Store(written.UnixNano())
	for {
		v := g.queued.Load()
		if g.queued.CompareAndSwap(v, max(v-n, 0)) {
			return
		}
	}
}

// lag is how far behind Read is: the time since the newest message it took
// was written, or zero when nothing is waiting. It grows while Read is
// stuck.
func (g *clusterGauges) lag(now time.Time) time.Duration {
	if g.queued.Load() == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, g.taken.Load()))
}

func (m *queueMetrics) dedupHits(cluster string) *metrics.Counter {
	return m.set.GetOrCreateCounter(`vigil_queue_dedup_hits_total{cluster="` + metricLabel(cluster) + `"}`)
}

func (m *queueMetrics) cluster(name string) *clusterGauges {
	if g, ok := m.clusters.Load(name); ok {
		return g.(*clusterGauges)
	}
	fresh := &clusterGauges{}
	fresh.taken.Store(m.now().UnixNano()) // nothing taken yet: lag counts from now
	g, loaded := m.clusters.LoadOrStore(name, fresh)
	cg := g.(*clusterGauges)
	if !loaded {
		l := `{cluster="` + metricLabel(name) + `"}`
		m.set.GetOrCreateGauge("vigil_queue_queued_events"+l, func() float64 { return float64(cg.queued.Load()) })
		m.set.GetOrCreateGauge("vigil_queue_lag_seconds"+l, func() float64 { return cg.lag(m.now()).Seconds() })
	}
	return cg
}

var (
	_ ingest.Queue        = (*Queue)(nil)
	_ ingest.DeadLetterer = (*Queue)(nil)
)

// Open starts the embedded server on opts.Dir (creating the directory),
// creates or updates the streams and the consumer, and starts delivery.
// The server listens on no network port: vigil connects in-process.
func Open(ctx context.Context, opts Options) (*Queue, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	ns, lock, err := startServer(opts.Dir, opts.SyncAlways, opts.MaxPayload)
	if err != nil {
		return nil, err
	}
	q := &Queue{opts: opts, log: opts.Logger, ns: ns, lock: lock, done: make(chan struct{}),
		msgs:  make(chan jetstream.Msg, 64),
		dedup: ingest.NewDedup(opts.DedupWindow, opts.DedupMaxKeys)}
	if err := q.setup(ctx); err != nil {
		q.shutdown()
		return nil, err
	}
	return q, nil
}

// startServer takes the store directory's lock and starts the embedded
// server on it.
func startServer(dir string, syncAlways bool, maxPayload int) (*server.Server, *os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create queue directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, nil, err
	}
	ns, err := server.NewServer(&server.Options{
		ServerName:         "vigil",
		DontListen:         true,
		JetStream:          true,
		StoreDir:           dir,
		SyncAlways:         syncAlways,
		MaxPayload:         int32(maxPayload),
		JetStreamMaxMemory: 64 << 20,
		NoSigs:             true,
		NoLog:              true,
	})
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("create embedded queue server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		lock.Close()
		return nil, nil, fmt.Errorf("start embedded queue server in %s: not ready after 30s", dir)
	}
	return ns, lock, nil
}

func (q *Queue) setup(ctx context.Context) error {
	s := q.opts.Metrics
	q.m = queueMetrics{set: s, now: q.opts.Now,
		published:     s.NewCounter("vigil_queue_published_records_total"),
		publishedMsgs: s.NewCounter("vigil_queue_published_messages_total"),
		full:          s.NewCounter("vigil_queue_full_refusals_total"),
		stalls:        s.NewCounter("vigil_queue_publish_stalls_total"),
		read:          s.NewCounter("vigil_queue_read_records_total"),
		redelivered:   s.NewCounter("vigil_queue_redelivered_messages_total"),
		dead:          s.NewCounter("vigil_queue_deadletter_items_total"),
		corrupt:       s.NewCounter("vigil_queue_corrupt_messages_total"),
	}
	s.NewGauge("vigil_queue_pending_bytes", func() float64 { return float64(q.stored.Load() + q.reserved.Load()) })
	q.m.dedupKeys = s.NewGauge("vigil_queue_dedup_keys", nil)

	nc, err := nats.Connect("", nats.InProcessServer(q.ns), nats.Name("vigil"),
		nats.MaxReconnects(-1), nats.NoCallbacksAfterClientClose())
	if err != nil {
		return fmt.Errorf("connect to embedded queue server: %w", err)
	}
	q.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("open jetstream: %w", err)
	}
	q.js = js
	pubNC, err := nats.Connect("", nats.InProcessServer(q.ns), nats.Name("vigil-publish"),
		nats.MaxReconnects(-1), nats.NoCallbacksAfterClientClose())
	if err != nil {
		return fmt.Errorf("connect to embedded queue server: %w", err)
	}
	q.pubNC = pubNC
	// The async publish window bounds memory held by unacknowledged
	// publishes; past it PublishMsgAsync stalls and then fails with
	// ErrTooManyStalledMsgs, which Publish retries.
	q.pubJS, err = jetstream.New(pubNC, jetstream.WithPublishAsyncMaxPending(256),
		jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return fmt.Errorf("open jetstream: %w", err)
	}
	q.events, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        EventStream,
		Description: "audit events waiting for and kept after detection",
		Subjects:    []string{EventSubject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		// Refuse new data when full instead of dropping the oldest, which
		// may not be processed yet.
		Discard:    jetstream.DiscardNew,
		MaxAge:     q.opts.Retention,
		MaxBytes:   q.opts.MaxBytes,
		MaxMsgSize: int32(q.opts.MaxPayload),
		Duplicates: time.Minute,
		Replicas:   1,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", EventStream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "items refused inside otherwise valid webhook requests",
		Subjects:    []string{DeadSubject},
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      DefaultDeadLetterAge,
		MaxBytes:    1 << 30,
		MaxMsgSize:  int32(q.opts.MaxPayload),
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", DeadLetterStream, err)
	}
	// Messages an earlier run took and did not acknowledge would come back
	// only after AckWait: start the consumer again right after its ack
	// floor, so they come at once (de-duplication absorbs those that were
	// processed). Only this process consumes, so nothing is taken from a
	// peer.
	ccfg := jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "detection",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       q.opts.AckWait,
		MaxAckPending: 1024,
		MaxDeliver:    -1,
	}
	if old, err := q.events.Consumer(ctx, ConsumerName); err == nil {
		ci, err := old.Info(ctx)
		if err != nil {
			return fmt.Errorf("read consumer %s: %w", ConsumerName, err)
		}
		q.floor = ci.AckFloor.Stream
		if err := q.events.DeleteConsumer(ctx, ConsumerName); err != nil {
			return fmt.Errorf("reset consumer %s: %w", ConsumerName, err)
		}
		ccfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		ccfg.OptStartSeq = q.floor + 1
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("look up consumer %s: %w", ConsumerName, err)
	}
	q.cons, err = q.events.CreateConsumer(ctx, ccfg)
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", ConsumerName, err)
	}
	if err := q.initPending(ctx); err != nil {
		return err
	}
	q.cc, err = q.cons.Consume(q.deliver,
		jetstream.PullMaxMessages(64),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			q.log.Warn("queue delivery", "err", err)
		}))
	if err != nil {
		return fmt.Errorf("start consuming %s: %w", EventStream, err)
	}
	return nil
}

// initPending estimates the unprocessed event bytes left by an earlier run
// from the consumer's pending count, the stream's average message size and
// the compression of its last message.
func (q *Queue) initPending(ctx context.Context) error {
	ci, err := q.cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("read consumer %s: %w", ConsumerName, err)
	}
	si, err := q.events.Info(ctx)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", EventStream, err)
	}
	if si.State.Msgs == 0 {
		return nil
	}
	pending := ci.NumPending + uint64(ci.NumAckPending)
	est := float64(pending) * float64(si.State.Bytes) / float64(si.State.Msgs)
	if last, err := q.events.GetMsg(ctx, si.State.LastSeq); err == nil && len(last.Data) > 0 {
		if data, buf, err := q.body(last.Data, last.Header); err == nil {
			est *= float64(len(data)) / float64(len(last.Data))
			q.putBuf(buf)
		}
	}
	q.stored.Store(int64(est))
	return nil
}

// deliver runs on the consumer's delivery goroutine; blocking here is the
// back-pressure that keeps delivered-but-unread messages bounded.
func (q *Queue) deliver(m jetstream.Msg) {
	select {
	case q.msgs <- m:
	case <-q.done:
	}
}

// MaxRecordSize is the largest event a Publish accepts.
func (q *Queue) MaxRecordSize() int { return q.opts.MaxPayload - frameSlack }

// Publish implements ingest.Queue. Entries are split into messages of at
// most MaxPayload bytes, each holding entries of one cluster, published
// asynchronously and awaited together.
func (q *Queue) Publish(ctx context.Context, entries []ingest.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	q.publishes.Add(1)
	defer q.publishes.Done()
	if q.closing.Load() {
		return fmt.Errorf("publish: %w", ingest.ErrClosed)
	}
	var size int64
	for _, e := range entries {
		if len(e.Data) > q.MaxRecordSize() {
			return fmt.Errorf("publish: record of %d bytes is over the limit of %d", len(e.Data), q.MaxRecordSize())
		}
		size += int64(len(e.Data) + len(e.Key) + 2*binary.MaxVarintLen32)
	}
	if r := q.reserved.Add(size); r+q.stored.Load() > q.opts.MaxPendingBytes {
		q.reserved.Add(-size)
		q.m.full.Inc()
		return fmt.Errorf("publish %d bytes with %d pending of %d: %w", size, r-size+q.stored.Load(), q.opts.MaxPendingBytes, ingest.ErrFull)
	}
	defer q.reserved.Add(-size)

	msgs, info := q.split(entries)
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	gauges := make([]*clusterGauges, len(msgs))
	for i, m := range msgs {
		// Counted before the message can reach Read, which uncounts it.
		gauges[i] = q.m.cluster(info[i].cluster)
		gauges[i].queued.Add(int64(info[i].events))
		f, err := q.publishAsync(ctx, m)
		if err != nil {
			gauges[i].queued.Add(-int64(info[i].events))
			return err
		}
		futures = append(futures, f)
	}
	var errs []error
	for i, f := range futures {
		select {
		case <-f.Ok():
			q.stored.Add(int64(info[i].raw))
		case err := <-f.Err():
			gauges[i].queued.Add(-int64(info[i].events))
			errs = append(errs, classify(err))
		case <-ctx.Done():
			// The client may still resend these messages: their
			// buffers are not reused.
			return fmt.Errorf("publish: wait for queue acknowledgement: %w", ctx.Err())
		}
	}
	q.putBufs(msgs)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	q.m.published.Add(len(entries))
	q.m.publishedMsgs.Add(len(msgs))
	return nil
}

// publishAsync sends one message, retrying while the async window is
// stalled: that is the client's back-pressure, not a failure.
func (q *Queue) publishAsync(ctx context.Context, m *nats.Msg) (jetstream.PubAckFuture, error) {
	for {
		f, err := q.pubJS.PublishMsgAsync(m, jetstream.WithStallWait(200*time.Millisecond))
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return nil, fmt.Errorf("publish: %w", classify(err))
		}
		q.m.stalls.Inc()
		select {
		case <-q.pubJS.PublishAsyncComplete():
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, fmt.Errorf("publish: queue stalled: %w", ctx.Err())
		}
		if q.closing.Load() {
			return nil, fmt.Errorf("publish: %w", ingest.ErrClosed)
		}
	}
}

// classify maps server refusals for lack of room to ErrFull and a closed
// connection to ErrClosed.
func classify(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10077, 10023, 10047: // store failed (stream full), insufficient resources, storage limits
			return fmt.Errorf("%w: %v", ingest.ErrFull, err)
		}
	}
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining) {
		return fmt.Errorf("%w: %v", ingest.ErrClosed, err)
	}
	return err
}

// split frames entries into messages no larger than the payload limit,
// starting a new message whenever the cluster changes, and compresses each.
// It returns the messages and, for each, its events and the size of its
// frames before compression.
//
// Messages take about rawTarget of frames: audit JSON compresses about 8×
// with S2, so a message stays under the 64 KiB that the server and the
// client read from a connection at a time (a larger one is gathered into a
// growing buffer on both sides, copied again each time). Compression also
// cuts what the store writes, caches and keeps on disk. A single entry
// larger than that still goes alone, up to the payload limit.
func (q *Queue) split(entries []ingest.Entry) ([]*nats.Msg, []msgInfo) {
	limit := min(q.opts.MaxPayload-frameSlack, rawTarget)
	scratch := q.getBuf(0)
	defer q.putBuf(scratch)
	var msgs []*nats.Msg
	var info []msgInfo
	for i := 0; i < len(entries); {
		cluster := entries[i].Cluster
		b := (*scratch)[:0]
		j := i
		for ; j < len(entries) && entries[j].Cluster == cluster; j++ {
			if j > i && len(b)+frameSize(entries[j]) > limit {
				break
			}
			b = appendFrame(b, entries[j])
		}
		*scratch = b
		m := nats.NewMsg(EventSubject)
		if cluster != "" {
			m.Header.Set(HeaderCluster, cluster)
		}
		m.Data = q.compress(m, b)
		msgs = append(msgs, m)
		info = append(info, msgInfo{raw: len(b), events: j - i, cluster: cluster})
		i = j
	}
	return msgs, info
}

// msgInfo describes a message split made: the size of its frames before
// compression, its events and their cluster.
type msgInfo struct {
	raw, events int
	cluster     string
}

// compress returns the body of a message of frames b, in a pool buffer:
// b compressed, with the header that says so, unless that saves nothing.
func (q *Queue) compress(m *nats.Msg, b []byte) []byte {
	need := s2.MaxEncodedLen(len(b))
	dst := *q.getBuf(need)
	if need > 0 {
		if enc := s2.Encode(dst[:need], b); len(enc) < len(b) {
			m.Header.Set(HeaderEncoding, encodingS2)
			return enc
		}
	}
	return append(dst[:0], b...)
}

// body returns the frames of a message: its data, or the data decompressed
// into a pool buffer, which is also returned (nil when none was used) for
// putBuf once the records are done with.
func (q *Queue) body(data []byte, h nats.Header) ([]byte, *[]byte, error) {
	switch enc := h.Get(HeaderEncoding); enc {
	case "":
		return data, nil, nil
	case encodingS2:
		n, err := s2.DecodedLen(data)
		if err != nil {
			return nil, nil, fmt.Errorf("decompress queue message: %w", err)
		}
		// Publish never writes more than the payload limit (this run's or
		// the default, which an earlier run may have had): a larger size is
		// corruption, and must not become an allocation.
		if limit := max(q.opts.MaxPayload, DefaultMaxPayload); n > limit {
			return nil, nil, fmt.Errorf("decompress queue message: size %d is over the payload limit of %d", n, limit)
		}
		buf := q.getBuf(n)
		out, err := s2.Decode((*buf)[:n], data)
		if err != nil {
			q.putBuf(buf)
			return nil, nil, fmt.Errorf("decompress queue message: %w", err)
		}
		return out, buf, nil
	default:
		return nil, nil, fmt.Errorf("queue message in unknown encoding %q", enc)
	}
}

// getBuf returns a pool buffer with room for size bytes.
func (q *Queue) getBuf(size int) *[]byte {
	if b, ok := q.bufs.Get().(*[]byte); ok {
		if cap(*b) >= size {
			return b
		}
		q.putBuf(b)
	}
	b := make([]byte, 0, max(size, rawTarget))
	return &b
}

func (q *Queue) putBuf(b *[]byte) {
	if b != nil && cap(*b) <= maxPooled {
		*b = (*b)[:0]
		q.bufs.Put(b)
	}
}

// putBufs returns the buffers of messages whose publish is over.
func (q *Queue) putBufs(msgs []*nats.Msg) {
	for _, m := range msgs {
		b := m.Data[:0]
		q.putBuf(&b)
		m.Data = nil
	}
}

func frameSize(e ingest.Entry) int {
	return len(e.Key) + len(e.Data) + 2*binary.MaxVarintLen32
}

func appendFrame(b []byte, e ingest.Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.AppendUvarint(b, uint64(len(e.Data)))
	return append(b, e.Data...)
}

// frame is one decoded entry of a message; key and data alias the message.
type frame struct{ key, data []byte }

// decodeFrames splits a message body back into entries.
func decodeFrames(b []byte, dst []frame) ([]frame, error) {
	for len(b) > 0 {
		var f frame
		for i := range 2 {
			n, w := binary.Uvarint(b)
			if w <= 0 || uint64(len(b)-w) < n {
				return dst, fmt.Errorf("corrupt frame at %d bytes from the end", len(b))
			}
			v := b[w : w+int(n)]
			b = b[w+int(n):]
			if i == 0 {
				f.key = v
			} else {
				f.data = v
			}
		}
		dst = append(dst, f)
	}
	return dst, nil
}

// Read implements ingest.Source: it blocks for one message and then takes
// what else is already delivered, up to MaxBatch records. Duplicates (by
// key, within the de-duplication window) are left out; a read whose records
// were all duplicates is acknowledged and Read waits for more.
func (q *Queue) Read(ctx context.Context) (ingest.Batch, error) {
	for {
		var first jetstream.Msg
		select {
		case first = <-q.msgs:
		case <-ctx.Done():
			return ingest.Batch{}, ctx.Err()
		case <-q.done:
			return ingest.Batch{}, fmt.Errorf("read: %w", ingest.ErrClosed)
		}
		d := &delivery{}
		q.take(d, first)
	more:
		for len(d.recs) < q.opts.MaxBatch {
			select {
			case m := <-q.msgs:
				q.take(d, m)
			default:
				break more
			}
		}
		b := ingest.Batch{Records: d.recs, Ack: q.ackFunc(d)}
		if len(d.recs) == 0 {
			if err := b.Ack(ctx, nil); err != nil {
				return ingest.Batch{}, err
			}
			continue
		}
		return b, nil
	}
}

// delivery is what Read took for one batch.
type delivery struct {
	msgs []jetstream.Msg
	recs []ingest.Record
	keys []ingest.Digest // of recs, to forget if the batch fails
	bufs []*[]byte       // decompressed bodies, which recs alias
	size int64           // of the frames, for the pending-bytes account
}

// take adds the message and its records that are not duplicates.
func (q *Queue) take(d *delivery, m jetstream.Msg) {
	d.msgs = append(d.msgs, m)
	h := m.Headers()
	cluster := h.Get(HeaderCluster)
	now := q.opts.Now()
	cg := q.m.cluster(cluster)
	written := now
	var origin string
	if md, err := m.Metadata(); err == nil {
		written = md.Timestamp
		if md.NumDelivered > 1 {
			q.m.redelivered.Inc()
		}
		origin = "queue:" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	// Only a bug or disk corruption makes body or decodeFrames fail; what
	// is intact is still processed and the problem is logged where it
	// happened.
	data, buf, err := q.body(m.Data(), h)
	if err != nil {
		q.m.corrupt.Inc()
		q.log.Error("read queue message", "err", err, "cluster", cluster, "origin", origin)
		return
	}
	if buf != nil {
		d.bufs = append(d.bufs, buf)
	}
	d.size += int64(len(data))
	frames, err := decodeFrames(data, nil)
	if err != nil {
		q.m.corrupt.Inc()
		q.log.Error("decode queue message", "err", err, "cluster", cluster, "origin", origin)
	}
	cg.take(int64(len(frames)), written)
	n := len(d.recs)
	q.dedupMu.Lock()
	for _, f := range frames {
		key := q.dedup.Digest(f.key)
		if q.dedup.Seen(key, now) {
			q.m.dedupHits(cluster).Inc()
			continue
		}
		d.recs = append(d.recs, ingest.Record{Data: f.data, Cluster: cluster, Origin: origin})
		d.keys = append(d.keys, key)
	}
	q.m.dedupKeys.Set(float64(q.dedup.Len()))
	q.dedupMu.Unlock()
	q.m.read.Add(len(d.recs) - n)
}

// ackFunc acknowledges the batch's messages. The last ack waits for the
// server's confirmation; acks on one connection are handled in order, so
// the whole batch is then recorded.
func (q *Queue) ackFunc(d *delivery) ingest.AckFunc {
	var done atomic.Bool
	return func(ctx context.Context, err error) error {
		if done.Swap(true) {
			return errors.New("ack: batch already acknowledged")
		}
		// The records are not read after this.
		for _, b := range d.bufs {
			q.putBuf(b)
		}
		if err != nil {
			// The records were not processed: let them through again.
			q.dedupMu.Lock()
			for _, k := range d.keys {
				q.dedup.Forget(k)
			}
			q.dedupMu.Unlock()
			var errs []error
			for _, m := range d.msgs {
				errs = append(errs, m.Nak())
			}
			if e := errors.Join(errs...); e != nil {
				return fmt.Errorf("nak queue messages: %w", e)
			}
			return nil
		}
		for i, m := range d.msgs {
			var aerr error
			if i == len(d.msgs)-1 {
				aerr = m.DoubleAck(ctx)
			} else {
				aerr = m.Ack()
			}
			if aerr != nil {
				return fmt.Errorf("ack queue message: %w", aerr)
			}
		}
		if q.stored.Add(-d.size) < 0 {
			q.stored.Store(0)
		}
		return nil
	}
}

// DeadLetter implements ingest.DeadLetterer.
func (q *Queue) DeadLetter(ctx context.Context, items []ingest.DeadLetter) error {
	limit := q.opts.MaxPayload - frameSlack
	for _, it := range items {
		m := nats.NewMsg(DeadSubject)
		m.Header.Set(HeaderReason, it.Reason)
		if it.Cluster != "" {
			m.Header.Set(HeaderCluster, it.Cluster)
		}
		m.Data = it.Data
		if len(m.Data) > limit {
			m.Data = m.Data[:limit]
			m.Header.Set(headerTruncated, strconv.Itoa(len(it.Data)))
		}
		if _, err := q.pubJS.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("store dead letter: %w", classify(err))
		}
		q.m.dead.Inc()
	}
	return nil
}

// Drained reports whether detection has acknowledged every stored event.
// It also corrects the pending-bytes figure, which is an estimate after a
// restart.
func (q *Queue) Drained(ctx context.Context) (bool, error) {
	ci, err := q.cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("read consumer %s: %w", ConsumerName, err)
	}
	if ci.NumPending == 0 && ci.NumAckPending == 0 {
		q.stored.Store(0)
		return true, nil
	}
	return false, nil
}

// JetStream returns the client of the embedded server, for components that
// keep their own state in it (Fingerprints).
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

// Conn returns the in-process connection to the embedded server, for
// components that publish on it (the nats alert sink).
func (q *Queue) Conn() *nats.Conn { return q.nc }

// Pending is the size of published and not yet acknowledged event data
// (estimated after a restart).
func (q *Queue) Pending() int64 { return q.stored.Load() + q.reserved.Load() }

// Close stops delivery and publishing and shuts the server down. Messages
// delivered and not acknowledged are delivered again after a restart.
// Publish calls in progress finish first.
func (q *Queue) Close(ctx context.Context) error {
	q.closeOnce.Do(func() {
		q.closing.Store(true)
		waited := make(chan struct{})
		go func() { q.publishes.Wait(); close(waited) }()
		select {
		case <-waited:
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
	if q.cc != nil {
		q.cc.Stop()
	}
	if q.pubNC != nil {
		q.pubNC.Close()
	}
	if q.nc != nil {
		q.nc.Close()
	}
	q.ns.Shutdown()
	q.ns.WaitForShutdown()
	q.lock.Close() // releases the lock
}

// metricLabel makes s safe inside a quoted metric label value.
func metricLabel(s string) string {
	if s == "" {
		return ""
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c == '\n' {
			c = '_'
		}
		b = append(b, c)
	}
	return string(b)
}
