// Package aks is the live source of AKS audit logs: an Event Hub fed by the
// cluster's diagnostic settings (categories kube-audit or
// kube-audit-admin), read through Event Hubs' Kafka endpoint as a member
// of a consumer group. Offsets are committed only after the events are
// stored.
package aks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"

	"github.com/vigil-k8s/vigil/ingest/envelope"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
	"github.com/vigil-k8s/vigil/ingest/sources"
)

// Config configures the source.
type Config struct {
	sources.Common
	// Brokers is the namespace's Kafka endpoint,
	// NAMESPACE.servicebus.windows.net:9093.
	Brokers []string
	// Topic is the event hub; Group the consumer group (default $Default).
	Topic, Group string
	// ConnectionString authenticates with SASL PLAIN as user
	// $ConnectionString (Username overrides the user for other Kafka
	// brokers).
	ConnectionString, Username string
	// TLS configures the connection (default: system roots); PlainText
	// turns TLS and SASL off (a local Kafka only).
	TLS       *tls.Config
	PlainText bool
	// MaxBatch and MaxWait bound the messages stored together (defaults
	// 100 and 500ms).
	MaxBatch int
	MaxWait  time.Duration
}

// Source reads an Event Hub. It is a pipeline.Source.
type Source struct {
	cfg Config
	h   *sources.Handler
}

var _ pipeline.Source = (*Source)(nil)

// New checks the configuration.
func New(cfg Config) (*Source, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" {
		return nil, errors.New("aks source: brokers and topic (the event hub) are required")
	}
	if !cfg.PlainText && cfg.ConnectionString == "" {
		return nil, errors.New("aks source: connection_string is required (SASL PLAIN to Event Hubs)")
	}
	if cfg.Group == "" {
		cfg.Group = "$Default"
	}
	if cfg.Username == "" {
		cfg.Username = "$ConnectionString"
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 100
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 500 * time.Millisecond
	}
	return &Source{cfg: cfg, h: sources.NewHandler(envelope.AKS, cfg.Common)}, nil
}

// Name implements pipeline.Source.
func (s *Source) Name() string { return s.h.Name() }

// Run consumes until ctx is done: it fetches a batch of messages, stores
// their events and commits the batch's offsets.
func (s *Source) Run(ctx context.Context, pub pipeline.Publisher) error {
	dialer := &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
	if !s.cfg.PlainText {
		dialer.TLS = s.cfg.TLS
		if dialer.TLS == nil {
			dialer.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		dialer.SASLMechanism = plain.Mechanism{Username: s.cfg.Username, Password: s.cfg.ConnectionString}
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: s.cfg.Brokers, GroupID: s.cfg.Group, Topic: s.cfg.Topic, Dialer: dialer,
		// Event Hubs messages are at most 1 MiB.
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: s.cfg.MaxWait,
		StartOffset: kafka.FirstOffset, HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second,
		ErrorLogger: kafka.LoggerFunc(func(f string, a ...any) { s.h.Logger().Warn(fmt.Sprintf(f, a...)) }),
	})
	defer r.Close()
	s.h.Logger().Info("consuming AKS audit logs", "topic", s.cfg.Topic, "group", s.cfg.Group)
	for {
		msgs, err := s.fetch(ctx, r)
		if len(msgs) > 0 {
			var b sources.Batch
			for _, m := range msgs {
				s.h.Decode(&b, m.Value, "eventhub:"+m.Topic+"/"+strconv.Itoa(m.Partition)+"@"+strconv.FormatInt(m.Offset, 10))
			}
			if derr := s.h.Deliver(ctx, pub, &b); derr != nil {
				return nil // stopping: the batch is read again after a restart
			}
			if cerr := r.CommitMessages(ctx, msgs...); cerr != nil {
				if ctx.Err() != nil {
					return nil
				}
				// Stored but not committed: delivered again, and dropped
				// as duplicates by the queue.
				s.h.Logger().Warn("commit offsets", "err", cerr)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("event hub %s: %w", s.cfg.Topic, err)
		}
	}
}

// fetch waits for a message, then takes what arrives within MaxWait, up to
// MaxBatch.
func (s *Source) fetch(ctx context.Context, r *kafka.Reader) ([]kafka.Message, error) {
	m, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	msgs := []kafka.Message{m}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.MaxWait)
	defer cancel()
	for len(msgs) < s.cfg.MaxBatch {
		m, err := r.FetchMessage(wctx)
		if err != nil {
			if ctx.Err() != nil {
				return msgs, err
			}
			break
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}
