// Package sources holds what the live sources of the managed Kubernetes
// services share: decoding their payloads into queue entries through
// ingest/envelope, storing them with retries, metrics, and the report of
// records a provider cut. Each provider's source is a subpackage
// (gke: Pub/Sub, aks: Event Hubs over Kafka, eks: Firehose and CloudWatch
// Logs); each acknowledges upstream only after Deliver returned nil.
package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/envelope"
)

// Publisher stores entries durably (the pipeline's queue).
type Publisher interface {
	Publish(ctx context.Context, entries []ingest.Entry) error
}

// Common configures what every source shares.
type Common struct {
	// Name names the source in logs and metrics (default the provider).
	Name string
	// Cluster names the cluster of events whose envelope names none.
	Cluster string
	Logger  *slog.Logger
	Metrics *metrics.Set
	// OnTruncated is told about every event the provider cut, once it is
	// stored.
	OnTruncated func(envelope.Item)
}

// Handler decodes payloads and delivers their events. It is safe for
// concurrent use.
type Handler struct {
	c        Common
	provider envelope.Format
	log      *slog.Logger
	mu       sync.Mutex
	dec      envelope.Decoder
	cur      *Batch

	events, truncated, bad, skipped, retries *metrics.Counter
}

// NewHandler returns a Handler for a provider's payloads.
func NewHandler(provider envelope.Format, c Common) *Handler {
	if c.Name == "" {
		c.Name = string(provider)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	h := &Handler{c: c, provider: provider, log: c.Logger.With("source", c.Name)}
	label := fmt.Sprintf(`{source=%q}`, c.Name)
	h.events = c.Metrics.GetOrCreateCounter("vigil_source_events_total" + label)
	h.truncated = c.Metrics.GetOrCreateCounter("vigil_source_truncated_events_total" + label)
	h.bad = c.Metrics.GetOrCreateCounter("vigil_source_bad_records_total" + label)
	h.skipped = c.Metrics.GetOrCreateCounter("vigil_source_skipped_records_total" + label)
	h.retries = c.Metrics.GetOrCreateCounter("vigil_source_publish_retries_total" + label)
	h.dec = envelope.Decoder{Format: provider, Cluster: c.Cluster,
		Item: func(it envelope.Item) error {
			h.cur.Entries = append(h.cur.Entries, it.Entry())
			if it.Truncated {
				h.cur.Truncated = append(h.cur.Truncated, it)
			}
			return nil
		},
		Bad: func(origin string, err error, data []byte) error {
			h.cur.Bad = append(h.cur.Bad, ingest.DeadLetter{Cluster: c.Cluster, Reason: origin + ": " + err.Error(), Data: data})
			return nil
		},
		Skip: func(string, string) { h.cur.Skipped++ },
	}
	return h
}

// Name is the source's name.
func (h *Handler) Name() string { return h.c.Name }

// Logger is the source's logger.
func (h *Handler) Logger() *slog.Logger { return h.log }

// Batch is what payloads held: events to store, records that hold none
// (dead letters), and how many were skipped by design.
type Batch struct {
	Entries   []ingest.Entry
	Bad       []ingest.DeadLetter
	Truncated []envelope.Item
	Skipped   int
}

// Len is the number of records the batch will store.
func (b *Batch) Len() int { return len(b.Entries) + len(b.Bad) }

// Decode adds a payload's events to b. origin says where the payload came
// from (such as "pubsub:projects/p/subscriptions/s/123").
func (h *Handler) Decode(b *Batch, payload []byte, origin string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur = b
	h.dec.Payload(payload, origin)
	h.cur, h.dec.Out = nil, nil
}

// DecodeCloudWatch adds one CloudWatch Logs event to b.
func (h *Handler) DecodeCloudWatch(b *Batch, message []byte, id string, timestampMs int64, cluster, origin string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur = b
	h.dec.CloudWatchEvent(message, id, timestampMs, cluster, origin)
	h.cur, h.dec.Out = nil, nil
}

// DecodeFirehose adds the data of one Firehose record to b.
func (h *Handler) DecodeFirehose(b *Batch, data []byte, origin string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur = b
	h.dec.FirehoseRecord(data, origin)
	h.cur, h.dec.Out = nil, nil
}

// Deliver stores a batch: its events, and its bad records as dead letters
// when pub keeps them. It retries what fails, with backoff, until it
// succeeds or ctx is done; only a nil return allows acknowledging the
// batch upstream.
func (h *Handler) Deliver(ctx context.Context, pub Publisher, b *Batch) error {
	wait := 100 * time.Millisecond
	for {
		err := h.store(ctx, pub, b)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("store %d events: %w", len(b.Entries), errors.Join(err, ctx.Err()))
		}
		h.retries.Inc()
		h.log.Warn("storing events failed; retrying", "events", len(b.Entries), "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("store %d events: %w", len(b.Entries), ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	h.events.Add(len(b.Entries))
	h.skipped.Add(b.Skipped)
	h.bad.Add(len(b.Bad))
	for _, d := range b.Bad {
		h.log.Warn("record holds no audit event", "err", d.Reason)
	}
	for _, it := range b.Truncated {
		h.truncated.Inc()
		if h.c.OnTruncated != nil {
			h.c.OnTruncated(it)
		}
	}
	return nil
}

func (h *Handler) store(ctx context.Context, pub Publisher, b *Batch) error {
	if len(b.Entries) > 0 {
		if err := pub.Publish(ctx, b.Entries); err != nil {
			return err
		}
	}
	if len(b.Bad) > 0 {
		if dl, ok := pub.(ingest.DeadLetterer); ok {
			if err := dl.DeadLetter(ctx, b.Bad); err != nil {
				return fmt.Errorf("store dead letters: %w", err)
			}
		}
	}
	return nil
}
