package natsq

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/jspub"
	"github.com/vigil-k8s/vigil/ingest/partition"
)

// Names of the JetStream objects the queue uses.
const (
	EventStream      = "VIGIL_EVENTS"
	subjectIn        = "vigil.events.k."
	subjectStored    = "vigil.events.p."
	DeadLetterStream = "VIGIL_EVENTS_DEADLETTER"
	DeadSubject      = "vigil.events.deadletter"
	AlertBucket      = "vigil_alerts"
	consumerPrefix   = "detect-"
	priorityGroup    = "vigil"
	serviceName      = "vigil-" + EventStream
	HeaderCluster    = jspub.HeaderCluster
	HeaderReason     = jspub.HeaderReason
	HeaderEncoding   = "Vigil-Encoding"
	headerTruncated  = jspub.HeaderTruncated
)

// Defaults for Options.
const (
	DefaultPartitions        = 24
	DefaultReplicas          = 3
	DefaultPinnedTTL         = 10 * time.Second
	DefaultAckWait           = 30 * time.Second
	DefaultDiscoveryInterval = 2 * time.Second
	DefaultMaxPendingBytes   = 1 << 30
	DefaultMaxBytes          = 10 << 30
	DefaultRetention         = time.Hour
	DefaultMaxBatch          = 4000
	DefaultDeadLetterAge     = 7 * 24 * time.Hour
	// frameSlack leaves room in a message for headers and frame lengths.
	frameSlack = 4 << 10
)

// Options configure the queue.
type Options struct {
	// URL lists the servers (nats://host:4222, comma separated). Conn, when
	// set, is used instead and is not closed by the queue.
	URL  string
	Conn *nats.Conn
	// CredsFile is a NATS credentials file (JWT and seed); TLS, when set,
	// is the client's TLS configuration (CA, client certificate).
	CredsFile string
	TLS       *tls.Config

	// Member names this replica among those that read the queue (default:
	// the host name, which is the pod name in a StatefulSet). Stable names
	// keep a restarted replica's partitions with it.
	Member string
	// Partitions is the number of partitions, fixed when the stream is
	// created (default 24): the most replicas that share the reading.
	Partitions int
	// Replicas is the number of copies of the streams and the bucket
	// (default 3; 1 for a single server).
	Replicas int
	// PartitionKey is the dotted path of the event field that picks the
	// partition (default user.username).
	PartitionKey string
	// PinnedTTL is how long a replica may go without pulling before the
	// server gives its partitions to another (default 10s). It bounds how
	// long a dead replica's partitions wait, and must be longer than the
	// longest pause of a live one (detection of one batch, a GC pause).
	PinnedTTL time.Duration
	// AckWait is how long a delivered message may stay unacknowledged
	// before it is delivered again (default 30s): what a dead replica held
	// comes back after it.
	AckWait time.Duration
	// DiscoveryInterval is how often a replica looks for the live ones
	// (default 2s); a replica unseen twice is gone.
	DiscoveryInterval time.Duration

	// MaxPayload caps a message (default and ceiling: the server's
	// max_payload).
	MaxPayload int
	// MaxPendingBytes is about how much published and unprocessed event
	// data the queue holds before Publish returns ErrFull (default 1 GiB).
	MaxPendingBytes int64
	// MaxBytes caps the event stream (default 10 GiB, reserved on each
	// server that keeps a copy); a full stream refuses new messages rather
	// than dropping unprocessed ones.
	MaxBytes int64
	// Retention is how long events stay in the stream (default 1h); it
	// must cover the span a replay re-reads. Near MaxBytes, the oldest
	// events every partition processed are purged sooner (trim.go).
	Retention time.Duration
	// MaxBatch is the most records one Read returns (default 4000).
	MaxBatch int
	// DedupWindow and DedupMaxKeys bound de-duplication (defaults
	// ingest.DefaultDedupWindow and ingest.DefaultDedupMaxKeys).
	DedupWindow  time.Duration
	DedupMaxKeys int

	Logger  *slog.Logger
	Metrics *metrics.Set
	// Now is the clock for de-duplication and lag (default time.Now).
	Now func() time.Time
}

func (o *Options) setDefaults() error {
	if o.URL == "" && o.Conn == nil {
		return errors.New("nats queue: no server URL")
	}
	if o.Member == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("nats queue: no member name and no host name: %w", err)
		}
		o.Member = h
	}
	if o.Partitions == 0 {
		o.Partitions = DefaultPartitions
	}
	if o.Partitions < 1 || o.Partitions > 1024 {
		return fmt.Errorf("nats queue: %d partitions, want 1 to 1024", o.Partitions)
	}
	if o.Replicas == 0 {
		o.Replicas = DefaultReplicas
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		return fmt.Errorf("nats queue: %d replicas, want 1 to 5", o.Replicas)
	}
	if o.PartitionKey == "" {
		o.PartitionKey = partition.DefaultKey
	}
	if o.PinnedTTL <= 0 {
		o.PinnedTTL = DefaultPinnedTTL
	}
	if o.PinnedTTL < 2*time.Second {
		return fmt.Errorf("nats queue: pinned TTL %v is under 2s", o.PinnedTTL)
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.DiscoveryInterval <= 0 {
		o.DiscoveryInterval = DefaultDiscoveryInterval
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

// connect opens a connection to the servers of opts, named name.
func connect(o *Options, name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.NoCallbacksAfterClientClose(),
		nats.ReconnectWait(time.Second)}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.TLS != nil {
		opts = append(opts, nats.Secure(o.TLS))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", o.URL, err)
	}
	return nc, nil
}
