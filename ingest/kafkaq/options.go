// Package kafkaq is the scale-out queue on Kafka: any number of vigil
// replicas publish to one topic (the webhook is stateless), keyed by the
// event's partition key, and read it as one consumer group, so that each
// partition, and with it the window state of its keys, is read by one
// replica at a time.
//
// Layout:
//
//   - topic vigil-events (Partitions partitions, created when missing):
//     one event per message, the message key its partition key
//     (user.username by default, partitioned with the murmur2 hash of the
//     Java client), headers vigil-cluster and vigil-key (the
//     de-duplication key); batches are LZ4-compressed.
//   - consumer group vigil-detect: kafka-go's group protocol assigns the
//     partitions to the live replicas and moves them when one comes or
//     goes. A replica commits a batch's offsets once detection has
//     acknowledged it.
//   - topic vigil-events-deadletter: items the webhook refused, with the
//     reason in the vigil-reason header.
//   - topic vigil-events-windows (compacted, one partition per event
//     partition): the window state each partition's owner saved last
//     (Snapshots).
//   - topic vigil-events-sent (compacted and expiring): fingerprints of
//     the alerts sent, shared by the replicas (SentSet).
package kafkaq

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/partition"
)

// Names and defaults.
const (
	DefaultTopic           = "vigil-events"
	DefaultGroup           = "vigil-detect"
	DeadLetterSuffix       = "-deadletter"
	HeaderCluster          = "vigil-cluster"
	HeaderKey              = "vigil-key"
	HeaderReason           = "vigil-reason"
	headerTruncated        = "vigil-truncated"
	DefaultPartitions      = 24
	DefaultReplication     = 3
	DefaultBatchBytes      = 1 << 20
	DefaultMaxPendingBytes = 1 << 30
	DefaultMaxBatch        = 4000
	DefaultSessionTimeout  = 10 * time.Second
	// recordSlack leaves room in a request for the message's key and
	// headers and the batch's framing.
	recordSlack = 4 << 10
)

// Options configure the queue.
type Options struct {
	// Brokers are the bootstrap addresses (host:port).
	Brokers []string
	// Topic holds the events (default vigil-events); its dead letters go
	// to Topic-deadletter. Group is the consumer group (default
	// vigil-detect).
	Topic, Group string
	// Partitions and Replication apply when the topic is created (defaults
	// 24 and 3).
	Partitions, Replication int
	// TLS and SASL secure the connections when set.
	TLS  *tls.Config
	SASL sasl.Mechanism
	// Dial, when set, opens the connections to the brokers (through a
	// proxy, say); default a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// PartitionKey is the dotted path of the event field that is the
	// message key (default user.username).
	PartitionKey string
	// BatchBytes caps a produce request to a partition (default and
	// most: 1 MiB, the brokers' default message.max.bytes); an event must
	// fit in it.
	BatchBytes int
	// MaxPendingBytes is about how much published and uncommitted event
	// data the topic holds before Publish returns ErrFull (default 1 GiB).
	MaxPendingBytes int64
	// MaxBatch is the most records one Read returns (default 4000).
	MaxBatch int
	// SessionTimeout is how long the group waits for a silent replica
	// before its partitions move (default 10s).
	SessionTimeout time.Duration
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
	if len(o.Brokers) == 0 {
		return errors.New("kafka queue: no brokers")
	}
	if o.Topic == "" {
		o.Topic = DefaultTopic
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.Partitions == 0 {
		o.Partitions = DefaultPartitions
	}
	if o.Replication == 0 {
		o.Replication = DefaultReplication
	}
	if o.Partitions < 1 || o.Replication < 1 {
		return fmt.Errorf("kafka queue: %d partitions and replication %d, want both positive", o.Partitions, o.Replication)
	}
	if o.PartitionKey == "" {
		o.PartitionKey = partition.DefaultKey
	}
	if o.BatchBytes == 0 {
		o.BatchBytes = DefaultBatchBytes
	}
	if o.BatchBytes < 64<<10 || o.BatchBytes > DefaultBatchBytes {
		return fmt.Errorf("kafka queue: batch bytes %d, want 64 KiB to 1 MiB", o.BatchBytes)
	}
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = DefaultSessionTimeout
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
