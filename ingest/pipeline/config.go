package pipeline

import (
	"context"
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/detect/incident"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/webhook"
)

// Queue is the durable hand-off between the webhook and detection.
type Queue interface {
	ingest.Queue
	ingest.DeadLetterer
	// Drained reports whether detection has acknowledged every stored
	// event.
	Drained(ctx context.Context) (bool, error)
	// MaxRecordSize is the largest event Publish accepts.
	MaxRecordSize() int
}

// Rereader is a Queue that keeps acknowledged events and can read them
// again: after a crash the pipeline rebuilds its window state from them.
// Replay hands fn the acknowledged events of the span before the consumer's
// ack floor, in order, as batches without an Ack.
type Rereader interface {
	Replay(ctx context.Context, span time.Duration, fn func(ingest.Batch, ingest.ReplayInfo) error) (ingest.ReplayInfo, error)
}

// Snapshots keeps the window state of each partition of a partitioned
// queue where every replica can read it, so that the replica that gains a
// partition continues from the state its previous owner saved last
// (natsq.Snapshots, kafkaq.Snapshots). Load returns nil when nothing was
// saved.
type Snapshots interface {
	Load(ctx context.Context, p int) ([]byte, error)
	Save(ctx context.Context, p int, data []byte) error
}

// Alerts is the alert store: Dispatch returns once the alerts are stored
// (the sinks deliver them from there), WaitDelivered once every sink has
// taken everything stored, Close when delivery has stopped.
type Alerts interface {
	Dispatch(ctx context.Context, alerts ...detect.Alert) error
	WaitDelivered(ctx context.Context) error
	Close(ctx context.Context) error
}

// SentSet records the fingerprints of alerts already stored, so that
// alerts raised again while window state is rebuilt are not sent twice.
type SentSet interface {
	Has(ctx context.Context, fingerprint string) (bool, error)
	Add(ctx context.Context, fingerprint string, value []byte) error
}

// syncer is a SentSet that learns what other replicas recorded with a
// delay (kafkaq.SentSet): Sync catches up before a gained partition is
// rebuilt.
type syncer interface {
	Sync(ctx context.Context) error
}

// Source is a live input beside the webhook, such as a cloud provider's
// log subscription. Run publishes what it receives until ctx is done and
// acknowledges upstream only after Publish returned nil, so nothing it
// acknowledged can be lost. It retries what fails for a moment itself; an
// error it returns stops the pipeline.
type Source interface {
	Name() string
	Run(ctx context.Context, pub Publisher) error
}

// Publisher stores events durably; Run's Queue is one.
type Publisher interface {
	Publish(ctx context.Context, entries []ingest.Entry) error
}

// StoredAlert is an alert in the alert store, as reconciliation at start
// needs it.
type StoredAlert struct{ Fingerprint, Rule string }

// Config configures a Server. Queue, Alerts and Rules are required.
type Config struct {
	Rules *detect.RuleSet
	// Queue carries events from the webhook to detection. A Queue that is
	// also a Rereader lets window state survive a crash. A Queue that is a
	// partition.Reader is shared by several replicas: detection keeps
	// window state per partition, rebuilds a partition's state when it
	// gains it (from Snapshots and the queue) and drops it when it loses it.
	Queue Queue
	// Snapshots (optional, with a partitioned Queue) keeps the window state
	// of each partition; it is saved every SnapshotInterval (default 30s),
	// when a partition is handed over and at a graceful stop. Without it a
	// gained partition is rebuilt from the span of history RebuildSpan
	// says.
	Snapshots        Snapshots
	SnapshotInterval time.Duration
	// Alerts stores and delivers alerts; SentSet (optional) remembers what
	// was stored across restarts.
	Alerts  Alerts
	SentSet SentSet
	// RecentAlerts (optional) lists the newest alerts of the alert store:
	// at start, those whose fingerprint a crash kept from reaching
	// SentSet are recorded there.
	RecentAlerts func(ctx context.Context, n int) ([]StoredAlert, error)

	// Sources are inputs beside the webhook (optional).
	Sources []Source

	// Webhook configures the receiver; its Queue, DeadLetters, Logger and
	// Metrics are set by New.
	Webhook webhook.Options
	// Listen is the webhook's address, served with TLS when TLS is set.
	Listen string
	TLS    *tls.Config
	// OpsListen is the plain HTTP address of /metrics, /healthz and
	// /readyz ("" turns it off); Pprof adds /debug/pprof/.
	OpsListen string
	Pprof     bool
	// DataDir holds the window state saved at a graceful stop (required).
	DataDir string

	// Detection: workers, allowed lateness, window keys per rule and
	// distinct values counted exactly per key (the engine's defaults when
	// zero).
	Workers        int
	Lateness       time.Duration
	MaxKeysPerRule int
	DistinctExact  int
	// MemoryLimit is the memory, in bytes, serve keeps to: the runtime's
	// soft limit, and while the live heap is over 80% of it the webhook
	// and the sources are refused (429) until the heap shrinks. Zero means 90% of the
	// container's memory limit when there is one, negative none
	// (ResolveMemoryLimit).
	MemoryLimit int64
	// SilenceAfter raises audit-pipeline-silent for a cluster that sent
	// nothing for this long (default 10m).
	SilenceAfter time.Duration
	// DrainTimeout bounds the graceful stop (default 30s).
	DrainTimeout time.Duration

	Logger  *slog.Logger
	Metrics *metrics.Set
	// BeforeBatch, when set, runs before detection takes each batch
	// (tests stall detection with it).
	BeforeBatch func(ctx context.Context)
	// Incidents, when set, groups the alerts into incidents and raises an
	// alert of rule "incident" when one opens or escalates.
	Incidents *incident.Tracker
}
