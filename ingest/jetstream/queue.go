package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/frames"
	"github.com/vigil-k8s/vigil/ingest/internal/gate"
	"github.com/vigil-k8s/vigil/ingest/internal/jspub"
	"github.com/vigil-k8s/vigil/ingest/internal/qdedup"
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
	HeaderCluster    = jspub.HeaderCluster
	HeaderReason     = jspub.HeaderReason
	// HeaderEncoding is "s2" on an event message whose body is compressed
	// (S2 block format); without it the body is the frames as they are.
	HeaderEncoding = "Vigil-Encoding"
	// headerTruncated is the size of a dead-lettered item stored cut to
	// the payload limit.
	headerTruncated = jspub.HeaderTruncated
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
	// DedupWindow and DedupMaxKeys bound de-duplication (defaults
	// ingest.DefaultDedupWindow and ingest.DefaultDedupMaxKeys).
	DedupWindow  time.Duration
	DedupMaxKeys int
	// AckWait is how long a delivered message may stay unacknowledged
	// before the server delivers it again (default 2m).
	AckWait time.Duration
	// TrimInterval is how often the stream is checked for processed
	// history to purge when it nears MaxBytes (default 10s).
	TrimInterval time.Duration
	Logger       *slog.Logger
	Metrics      *metrics.Set
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
	if o.DedupWindow <= 0 {
		o.DedupWindow = ingest.DefaultDedupWindow
	}
	if o.DedupMaxKeys <= 0 {
		o.DedupMaxKeys = ingest.DefaultDedupMaxKeys
	}
	if o.AckWait <= 0 {
		o.AckWait = 2 * time.Minute
	}
	if o.TrimInterval <= 0 {
		o.TrimInterval = 10 * time.Second
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
	bufs   frames.Pool
	events jetstream.Stream
	cons   jetstream.Consumer
	cc     jetstream.ConsumeContext

	// msgs carries delivered messages from the consume callback to Read;
	// its capacity and the pull limit bound the memory held by delivery.
	msgs chan jetstream.Msg
	done chan struct{}
	// trimmed is closed when trimLoop has returned.
	trimmed chan struct{}
	// publishes lets Publish and DeadLetter calls in until Close, which
	// waits for those inside before it shuts the server down.
	publishes gate.Gate
	closeOnce sync.Once

	// stored is the size of event messages stored and not acknowledged;
	// reserved the size of those being published.
	stored, reserved atomic.Int64

	// floor is the last sequence detection had acknowledged when the
	// queue opened.
	floor uint64

	dedup *qdedup.Set

	m queueMetrics
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
		msgs: make(chan jetstream.Msg, 64)}
	if err := q.setup(ctx); err != nil {
		q.shutdown()
		return nil, err
	}
	q.trimmed = make(chan struct{})
	go q.trimLoop(q.opts.TrimInterval)
	return q, nil
}

// MaxRecordSize is the largest event a Publish accepts.
func (q *Queue) MaxRecordSize() int { return q.opts.MaxPayload - frameSlack }

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
// Publish calls in progress finish first, unless ctx ends before.
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
	if q.trimmed != nil {
		<-q.trimmed
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
