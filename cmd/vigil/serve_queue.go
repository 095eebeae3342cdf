package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/spf13/pflag"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest/jetstream"
	"github.com/vigil-k8s/vigil/ingest/kafkaq"
	"github.com/vigil-k8s/vigil/ingest/natsq"
	"github.com/vigil-k8s/vigil/ingest/partition"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
	"github.com/vigil-k8s/vigil/ingest/tlsutil"
)

// Queue kinds of the queue: section and the flags.
const (
	queueEmbedded = "embedded"
	queueNATS     = "nats"
	queueKafka    = "kafka"
)

// NATSQueueConfig is queue.nats: the external NATS JetStream queue
// (docs/scale-out.md).
type NATSQueueConfig struct {
	URL       string `yaml:"url"`
	CredsFile string `yaml:"creds_file"`
	// CA, Cert and Key: the servers' CA and a client certificate.
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Member names this replica (default: the host name).
	Member       string          `yaml:"member"`
	Partitions   int             `yaml:"partitions"`
	Replicas     int             `yaml:"replicas"`
	PartitionKey string          `yaml:"partition_key"`
	PinnedTTL    detect.Duration `yaml:"pinned_ttl"`
	AckWait      detect.Duration `yaml:"ack_wait"`
}

// KafkaQueueConfig is queue.kafka: the Kafka queue (docs/scale-out.md).
type KafkaQueueConfig struct {
	Brokers      []string `yaml:"brokers"`
	Topic        string   `yaml:"topic"`
	Group        string   `yaml:"group"`
	Partitions   int      `yaml:"partitions"`
	Replication  int      `yaml:"replication"`
	PartitionKey string   `yaml:"partition_key"`
	CA           string   `yaml:"ca"`
	Cert         string   `yaml:"cert"`
	Key          string   `yaml:"key"`
	// Username and Password turn SASL on; Mechanism is plain (default),
	// scram-sha-256 or scram-sha-512.
	Username       string          `yaml:"username"`
	Password       string          `yaml:"password"`
	Mechanism      string          `yaml:"mechanism"`
	SessionTimeout detect.Duration `yaml:"session_timeout"`
}

// queueFlags are the flags of vigil serve that choose the queue; they
// override the queue: section.
type queueFlags struct {
	natsURL, natsCreds, natsCA, natsCert, natsKey string
	kafkaBrokers                                  []string
	member                                        string
}

func (f *queueFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.natsURL, "nats-url", "", "use the external NATS JetStream at these servers (nats://host:4222,...) as the queue, shared by several replicas")
	fl.StringVar(&f.natsCreds, "nats-creds", "", "NATS credentials file")
	fl.StringVar(&f.natsCA, "nats-ca", "", "CA of the NATS servers' certificates")
	fl.StringVar(&f.natsCert, "nats-cert", "", "client certificate for NATS (with --nats-key)")
	fl.StringVar(&f.natsKey, "nats-key", "", "key of the client certificate for NATS")
	fl.StringSliceVar(&f.kafkaBrokers, "kafka-brokers", nil, "use Kafka at these brokers (host:9092,...) as the queue, shared by several replicas")
	fl.StringVar(&f.member, "member", "", "name of this replica among those reading the queue (default: the host name)")
}

// queueSetup is what the queue needs besides its own settings.
type queueSetup struct {
	dataDir    string
	syncAlways bool
	// span is the history a window rebuild re-reads (pipeline.RebuildSpan),
	// sentSpan how long sent alerts are remembered (pipeline.SentSpan).
	span, sentSpan time.Duration
	metrics        *metrics.Set
}

// serveQueue is the queue vigil serve runs on, with what lives beside it:
// the record of sent alerts, the saved window state of the partitions
// (scale-out queues), and the JetStream (with the number of copies its
// streams keep) that holds the alert streams of the sinks.
type serveQueue struct {
	queue     pipeline.Queue
	sent      pipeline.SentSet
	snapshots pipeline.Snapshots
	js        natsjs.JetStream
	nc        *nats.Conn
	replicas  int
}

// queueKind is the queue the flags and the config choose.
func queueKind(f queueFlags, qc QueueConfig) (string, error) {
	switch {
	case f.natsURL != "" && len(f.kafkaBrokers) > 0:
		return "", usagef("serve: --nats-url and --kafka-brokers choose two queues; give one")
	case f.natsURL != "":
		return queueNATS, nil
	case len(f.kafkaBrokers) > 0:
		return queueKafka, nil
	}
	switch k := strings.ToLower(qc.Kind); k {
	case "", queueEmbedded:
		return queueEmbedded, nil
	case queueNATS, queueKafka:
		return k, nil
	default:
		return "", usagef("queue.kind %q: want embedded, nats or kafka", qc.Kind)
	}
}

// openServeQueue opens the queue the flags and the queue: section choose:
// the embedded JetStream in the data dir (one replica), an external NATS
// JetStream, or Kafka (several replicas). With Kafka the alert streams
// stay in an embedded JetStream in the data dir, which Close of the
// returned queue closes after the Kafka queue.
func (a *app) openServeQueue(ctx context.Context, f queueFlags, qc QueueConfig, s queueSetup) (serveQueue, error) {
	kind, err := queueKind(f, qc)
	if err != nil {
		return serveQueue{}, err
	}
	switch kind {
	case queueNATS:
		return a.openNATSQueue(ctx, f, qc, s)
	case queueKafka:
		return a.openKafkaQueue(ctx, f, qc, s)
	}
	q, err := a.openEmbedded(ctx, qc, s, s.metrics)
	if err != nil {
		return serveQueue{}, err
	}
	fps, err := q.Fingerprints(ctx, s.sentSpan+time.Hour)
	if err != nil {
		q.Close(context.Background())
		return serveQueue{}, err
	}
	return serveQueue{queue: q, sent: fps, js: q.JetStream(), nc: q.Conn(), replicas: 1}, nil
}

// openEmbedded opens the embedded JetStream in the data dir, registering
// its metrics in m.
func (a *app) openEmbedded(ctx context.Context, qc QueueConfig, s queueSetup, m *metrics.Set) (*jetstream.Queue, error) {
	q, err := jetstream.Open(ctx, jetstream.Options{
		Dir:             filepath.Join(s.dataDir, "queue"),
		SyncAlways:      s.syncAlways || qc.SyncAlways,
		MaxPendingBytes: qc.MaxPendingBytes,
		MaxBytes:        qc.MaxBytes,
		Retention:       max(qc.Retention.D(), s.span+time.Hour),
		DedupWindow:     qc.DedupWindow.D(),
		DedupMaxKeys:    qc.DedupMaxKeys,
		Logger:          a.logger.With("component", "queue"),
		Metrics:         m,
	})
	if err != nil {
		return nil, fmt.Errorf("open queue: %w", err)
	}
	return q, nil
}

func (a *app) openNATSQueue(ctx context.Context, f queueFlags, qc QueueConfig, s queueSetup) (serveQueue, error) {
	nc := qc.NATS
	for _, o := range []struct{ flag, cfg *string }{
		{&f.natsURL, &nc.URL}, {&f.natsCreds, &nc.CredsFile}, {&f.natsCA, &nc.CA},
		{&f.natsCert, &nc.Cert}, {&f.natsKey, &nc.Key}, {&f.member, &nc.Member},
	} {
		if *o.flag != "" {
			*o.cfg = *o.flag
		}
	}
	if nc.URL == "" {
		return serveQueue{}, usagef("queue.kind nats: set queue.nats.url or --nats-url")
	}
	tc, err := clientTLS("queue.nats", nc.CA, nc.Cert, nc.Key)
	if err != nil {
		return serveQueue{}, err
	}
	opts := natsq.Options{URL: nc.URL, CredsFile: nc.CredsFile, TLS: tc, Member: nc.Member,
		Partitions: nc.Partitions, Replicas: nc.Replicas, PartitionKey: nc.PartitionKey,
		PinnedTTL: nc.PinnedTTL.D(), AckWait: nc.AckWait.D(),
		MaxPendingBytes: qc.MaxPendingBytes, MaxBytes: qc.MaxBytes,
		Retention:   max(qc.Retention.D(), s.span+time.Hour),
		DedupWindow: qc.DedupWindow.D(), DedupMaxKeys: qc.DedupMaxKeys,
		Logger: a.logger.With("component", "queue"), Metrics: s.metrics}
	q, err := natsq.Open(ctx, opts)
	if err != nil {
		return serveQueue{}, fmt.Errorf("open nats queue: %w", err)
	}
	sent, err := q.SentSet(ctx, s.sentSpan+time.Hour)
	if err != nil {
		q.Close(context.Background())
		return serveQueue{}, err
	}
	snaps, err := q.Snapshots(ctx)
	if err != nil {
		q.Close(context.Background())
		return serveQueue{}, err
	}
	return serveQueue{queue: q, sent: sent, snapshots: snaps, js: q.JetStream(), nc: q.Conn(), replicas: q.Replicas()}, nil
}

// kafkaServe is the Kafka queue with the embedded JetStream that holds the
// alert streams beside it; Close closes both, the store last.
type kafkaServe struct {
	*kafkaq.Queue
	alerts *jetstream.Queue
}

func (k kafkaServe) Close(ctx context.Context) error {
	return errors.Join(k.Queue.Close(ctx), k.alerts.Close(ctx))
}

func (a *app) openKafkaQueue(ctx context.Context, f queueFlags, qc QueueConfig, s queueSetup) (serveQueue, error) {
	kc := qc.Kafka
	if len(f.kafkaBrokers) > 0 {
		kc.Brokers = f.kafkaBrokers
	}
	if len(kc.Brokers) == 0 {
		return serveQueue{}, usagef("queue.kind kafka: set queue.kafka.brokers or --kafka-brokers")
	}
	tc, err := clientTLS("queue.kafka", kc.CA, kc.Cert, kc.Key)
	if err != nil {
		return serveQueue{}, err
	}
	mech, err := kafkaSASL(kc)
	if err != nil {
		return serveQueue{}, err
	}
	// The alert streams stay local: open them first, as the data dir's
	// lock says no other vigil uses it. The store's own event stream stays
	// empty; its queue metrics are not exported, the Kafka queue's of the
	// same names are. The sent set and the window state are topics shared
	// by the replicas.
	store, err := a.openEmbedded(ctx, qc, s, metrics.NewSet())
	if err != nil {
		return serveQueue{}, err
	}
	q, err := kafkaq.Open(ctx, kafkaq.Options{Brokers: kc.Brokers, Topic: kc.Topic, Group: kc.Group,
		Partitions: kc.Partitions, Replication: kc.Replication, TLS: tc, SASL: mech,
		PartitionKey: kc.PartitionKey, SessionTimeout: kc.SessionTimeout.D(),
		MaxPendingBytes: qc.MaxPendingBytes, DedupWindow: qc.DedupWindow.D(), DedupMaxKeys: qc.DedupMaxKeys,
		Logger: a.logger.With("component", "queue"), Metrics: s.metrics})
	if err != nil {
		store.Close(context.Background())
		return serveQueue{}, fmt.Errorf("open kafka queue: %w", err)
	}
	sq := serveQueue{queue: kafkaServe{Queue: q, alerts: store}, js: store.JetStream(), nc: store.Conn(), replicas: 1}
	if sq.sent, err = q.SentSet(ctx, s.sentSpan+time.Hour); err == nil {
		sq.snapshots, err = q.Snapshots(ctx)
	}
	if err != nil {
		sq.queue.Close(context.Background())
		return serveQueue{}, err
	}
	return sq, nil
}

// clientTLS is the TLS client configuration of a queue section: nil when
// neither a CA nor a certificate is given.
func clientTLS(section, ca, cert, key string) (*tls.Config, error) {
	if (cert == "") != (key == "") {
		return nil, usagef("%s: set both cert and key, or neither", section)
	}
	if ca == "" && cert == "" {
		return nil, nil
	}
	tc, err := tlsutil.ClientConfig(ca, cert, key)
	if err != nil {
		return nil, usagef("%s: %w", section, err)
	}
	return tc, nil
}

func kafkaSASL(kc KafkaQueueConfig) (sasl.Mechanism, error) {
	if kc.Username == "" {
		return nil, nil
	}
	switch strings.ToLower(kc.Mechanism) {
	case "", "plain":
		return plain.Mechanism{Username: kc.Username, Password: kc.Password}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, kc.Username, kc.Password)
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, kc.Username, kc.Password)
	}
	return nil, usagef("queue.kafka.mechanism %q: want plain, scram-sha-256 or scram-sha-512", kc.Mechanism)
}

var (
	_ partition.Reader   = (*natsq.Queue)(nil)
	_ partition.Reader   = kafkaServe{}
	_ pipeline.SentSet   = (*natsq.SentSet)(nil)
	_ pipeline.SentSet   = (*kafkaq.SentSet)(nil)
	_ pipeline.Snapshots = (*natsq.Snapshots)(nil)
	_ pipeline.Snapshots = (*kafkaq.Snapshots)(nil)
)
