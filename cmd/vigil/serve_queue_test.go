package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/vigil-k8s/vigil/ingest/jetstream"
	"github.com/vigil-k8s/vigil/ingest/natsq"
)

func TestQueueKind(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags queueFlags
		cfg   QueueConfig
		want  string
		err   string
	}{
		{name: "default", want: queueEmbedded},
		{name: "config nats", cfg: QueueConfig{Kind: "NATS"}, want: queueNATS},
		{name: "config kafka", cfg: QueueConfig{Kind: "kafka"}, want: queueKafka},
		{name: "flag over config", flags: queueFlags{natsURL: "nats://x:4222"}, cfg: QueueConfig{Kind: "kafka"}, want: queueNATS},
		{name: "kafka flag", flags: queueFlags{kafkaBrokers: []string{"k:9092"}}, want: queueKafka},
		{name: "both flags", flags: queueFlags{natsURL: "nats://x:4222", kafkaBrokers: []string{"k:9092"}}, err: "two queues"},
		{name: "unknown kind", cfg: QueueConfig{Kind: "redis"}, err: `queue.kind "redis"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := queueKind(tc.flags, tc.cfg)
			if tc.err != "" {
				var ue usageError
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &ue) {
					t.Fatalf("queueKind = %q, %v; want a usage error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("queueKind = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestOpenServeQueue_Errors(t *testing.T) {
	a := &app{logger: slog.New(slog.DiscardHandler)}
	s := queueSetup{dataDir: t.TempDir(), span: time.Hour, metrics: metrics.NewSet()}
	for _, tc := range []struct {
		name string
		cfg  QueueConfig
		want string
	}{
		{"nats without url", QueueConfig{Kind: "nats"}, "queue.nats.url"},
		{"kafka without brokers", QueueConfig{Kind: "kafka"}, "queue.kafka.brokers"},
		{"cert without key", QueueConfig{Kind: "nats", NATS: NATSQueueConfig{URL: "nats://127.0.0.1:1", Cert: "c.pem"}}, "both cert and key"},
		{"bad mechanism", QueueConfig{Kind: "kafka", Kafka: KafkaQueueConfig{Brokers: []string{"127.0.0.1:1"}, Username: "u", Mechanism: "gssapi"}}, "mechanism"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.openServeQueue(t.Context(), queueFlags{}, tc.cfg, s)
			var ue usageError
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ue) {
				t.Fatalf("open: %v, want a usage error naming %s", err, tc.want)
			}
		})
	}
}

// TestOpenServeQueue opens each kind for real and checks what comes with
// it: the sent set and the JetStream of the alert streams.
func TestOpenServeQueue(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	a := &app{logger: slog.New(slog.DiscardHandler)}
	for _, tc := range []struct {
		name  string
		flags queueFlags
		cfg   QueueConfig
		check func(t *testing.T, sq serveQueue)
	}{
		{"embedded", queueFlags{}, QueueConfig{}, func(t *testing.T, sq serveQueue) {
			if _, ok := sq.queue.(*jetstream.Queue); !ok || sq.replicas != 1 {
				t.Errorf("queue %T with %d replicas, want the embedded one", sq.queue, sq.replicas)
			}
		}},
		{"nats", queueFlags{natsURL: ns.ClientURL(), member: "vigil-0"}, QueueConfig{NATS: NATSQueueConfig{Replicas: 1, Partitions: 3}}, func(t *testing.T, sq serveQueue) {
			q, ok := sq.queue.(*natsq.Queue)
			if !ok || q.Partitions() != 3 || sq.replicas != 1 {
				t.Errorf("queue %T, want the NATS queue with 3 partitions", sq.queue)
			}
		}},
		{"kafka", queueFlags{kafkaBrokers: kc.ListenAddrs()}, QueueConfig{Kafka: KafkaQueueConfig{Replication: 1, Partitions: 3}}, func(t *testing.T, sq serveQueue) {
			if _, ok := sq.queue.(kafkaServe); !ok {
				t.Errorf("queue %T, want the Kafka queue", sq.queue)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			sq, err := a.openServeQueue(ctx, tc.flags, tc.cfg, queueSetup{dataDir: t.TempDir(), span: time.Hour, metrics: metrics.NewSet()})
			if err != nil {
				t.Fatal(err)
			}
			defer sq.queue.Close(context.Background())
			if sq.sent == nil || sq.js == nil || sq.nc == nil {
				t.Fatalf("open gave sent set %v, jetstream %v, conn %v", sq.sent, sq.js, sq.nc)
			}
			if err := sq.sent.Add(ctx, "fp", []byte("r")); err != nil {
				t.Fatal(err)
			}
			tc.check(t, sq)
		})
	}
}

// TestChartConfigs loads the config files the Helm chart renders
// (deploy/helm/testdata, kept in step with the chart by its tests) as
// vigil serve does.
func TestChartConfigs(t *testing.T) {
	t.Setenv("KAFKA_USERNAME", "vigil")
	t.Setenv("KAFKA_PASSWORD", "secret")
	paths, err := filepath.Glob(filepath.Join("..", "..", "deploy", "helm", "testdata", "config-*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no chart configs: %v", err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cfg, err := loadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			ss, err := serveConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			kind, err := queueKind(queueFlags{}, ss.Queue)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(path, kind) {
				t.Errorf("%s chooses the %s queue", path, kind)
			}
			if _, err := cfg.sinkConfig(); err != nil {
				t.Error(err)
			}
			if _, err := cfg.responseConfig(); err != nil {
				t.Error(err)
			}
			if kind == queueKafka && ss.Queue.Kafka.Password != "secret" {
				t.Errorf("kafka password %q, want it from the environment", ss.Queue.Kafka.Password)
			}
		})
	}
}
