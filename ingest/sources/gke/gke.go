// Package gke is the live source of GKE audit logs: a Pub/Sub pull
// subscription fed by a Cloud Logging sink of the cluster's audit entries.
// A message is acknowledged only after its events are stored.
package gke

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vigil-k8s/vigil/ingest/envelope"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
	"github.com/vigil-k8s/vigil/ingest/sources"
)

// Config configures the source.
type Config struct {
	sources.Common
	// Project and Subscription name the pull subscription
	// (projects/PROJECT/subscriptions/SUBSCRIPTION).
	Project, Subscription string
	// CredentialsFile is a service-account key; empty uses the
	// application default credentials (workload identity on GKE).
	CredentialsFile string
	// Endpoint overrides the Pub/Sub address (an emulator: also set
	// Insecure for plain gRPC without credentials).
	Endpoint string
	Insecure bool
	// MaxBatch and MaxWait bound the messages stored together (defaults
	// 500 and 200ms).
	MaxBatch int
	MaxWait  time.Duration
}

// Source reads a Pub/Sub subscription. It is a pipeline.Source.
type Source struct {
	cfg Config
	h   *sources.Handler
}

var _ pipeline.Source = (*Source)(nil)

// New checks the configuration.
func New(cfg Config) (*Source, error) {
	if cfg.Project == "" || cfg.Subscription == "" {
		return nil, errors.New("gke source: project and subscription are required")
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 500
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 200 * time.Millisecond
	}
	return &Source{cfg: cfg, h: sources.NewHandler(envelope.GKE, cfg.Common)}, nil
}

// Name implements pipeline.Source.
func (s *Source) Name() string { return s.h.Name() }

// pending is a received message waiting for its batch to be stored.
type pending struct {
	msg    *pubsub.Message
	stored chan bool
}

// Run receives until ctx is done. Each message's callback waits until the
// batch holding it is stored, then acknowledges it; a batch that cannot be
// stored before ctx ends is nacked and delivered again.
func (s *Source) Run(ctx context.Context, pub pipeline.Publisher) error {
	opts := []option.ClientOption{}
	if s.cfg.CredentialsFile != "" {
		opts = append(opts, option.WithAuthCredentialsFile(option.ServiceAccount, s.cfg.CredentialsFile))
	}
	if s.cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(s.cfg.Endpoint))
	}
	if s.cfg.Insecure {
		opts = append(opts, option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	client, err := pubsub.NewClient(ctx, s.cfg.Project, opts...)
	if err != nil {
		return fmt.Errorf("pubsub client: %w", err)
	}
	defer client.Close()
	sub := client.Subscriber(s.cfg.Subscription)
	sub.ReceiveSettings.MaxOutstandingMessages = 2 * s.cfg.MaxBatch
	// Messages received and not yet handed to a callback go back at once
	// when the source stops, instead of after their ack deadline.
	sub.ReceiveSettings.ShutdownOptions = &pubsub.ShutdownOptions{Timeout: 10 * time.Second, Behavior: pubsub.ShutdownBehaviorNackImmediately}
	// Leases are extended 10s at a time: the messages of a source that
	// died come back within 10s, not after the client's 60s default.
	sub.ReceiveSettings.MaxDurationPerAckExtension = 10 * time.Second
	in := make(chan pending)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.batch(ctx, pub, in)
	}()
	s.h.Logger().Info("receiving GKE audit logs", "subscription", "projects/"+s.cfg.Project+"/subscriptions/"+s.cfg.Subscription)
	err = sub.Receive(ctx, func(cctx context.Context, m *pubsub.Message) {
		p := pending{msg: m, stored: make(chan bool, 1)}
		select {
		case in <- p:
		case <-ctx.Done():
			m.Nack()
			return
		}
		if <-p.stored {
			m.Ack()
		} else {
			m.Nack()
		}
	})
	close(in)
	<-done
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("pubsub receive %s: %w", s.cfg.Subscription, err)
	}
	return nil
}

// batch gathers messages, stores their events, and tells each callback
// the outcome.
func (s *Source) batch(ctx context.Context, pub pipeline.Publisher, in <-chan pending) {
	var msgs []pending
	var b sources.Batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		ok := len(msgs) == 0 || s.h.Deliver(ctx, pub, &b) == nil
		for _, p := range msgs {
			p.stored <- ok
		}
		msgs, b = msgs[:0], sources.Batch{}
	}
	for {
		select {
		case p, open := <-in:
			if !open {
				flush()
				return
			}
			s.h.Decode(&b, p.msg.Data, "pubsub:"+s.cfg.Subscription+"/"+p.msg.ID)
			msgs = append(msgs, p)
			if len(msgs) == 1 {
				timer.Reset(s.cfg.MaxWait)
			}
			if len(msgs) >= s.cfg.MaxBatch {
				timer.Stop()
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}
