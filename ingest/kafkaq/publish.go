package kafkaq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/vigil-k8s/vigil/ingest"
)

// Publish implements ingest.Queue: one message per event, keyed by its
// partition key, written with acknowledgement from all in-sync replicas.
// Messages of one key go to one partition in the order given.
func (q *Queue) Publish(ctx context.Context, entries []ingest.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if !q.publishes.Enter() {
		return fmt.Errorf("publish: %w", ingest.ErrClosed)
	}
	defer q.publishes.Leave()
	var size int64
	now := q.opts.Now()
	msgs := make([]kafka.Message, len(entries))
	for i, e := range entries {
		if len(e.Data) > q.MaxRecordSize() {
			return fmt.Errorf("publish: record of %d bytes is over the limit of %d", len(e.Data), q.MaxRecordSize())
		}
		size += int64(len(e.Data))
		key := q.keyer.Append(nil, e.Data)
		if len(key) == 0 {
			// The balancer spreads messages without a key: events without
			// the field share one partition, as they do on NATS.
			key = noKey
		}
		m := kafka.Message{Key: key, Value: e.Data, Time: now,
			Headers: []kafka.Header{{Key: HeaderKey, Value: []byte(e.Key)}}}
		if e.Cluster != "" {
			m.Headers = append(m.Headers, kafka.Header{Key: HeaderCluster, Value: []byte(e.Cluster)})
		}
		msgs[i] = m
	}
	if err := q.pending.Admit(ctx, size, q.opts.MaxPendingBytes); err != nil {
		q.m.Full.Inc()
		return fmt.Errorf("publish %d bytes: %w", size, err)
	}
	if err := q.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("publish: %w", classify(err))
	}
	q.pending.Published(size, len(msgs))
	q.m.Published.Add(len(entries))
	q.m.PublishedMsgs.Add(len(msgs))
	return nil
}

// noKey is the message key of events without a partition key.
var noKey = []byte{0}

// classify maps a full broker to ErrFull and a closed writer to ErrClosed.
func classify(err error) error {
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil {
				err = e
				break
			}
		}
	}
	switch {
	case errors.Is(err, kafka.KafkaStorageError), errors.Is(err, kafka.PolicyViolation),
		errors.Is(err, kafka.NotEnoughReplicas), errors.Is(err, kafka.NotEnoughReplicasAfterAppend):
		return fmt.Errorf("%w: %v", ingest.ErrFull, err)
	case errors.Is(err, io.ErrClosedPipe) || errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %v", ingest.ErrClosed, err)
	}
	return err
}

// DeadLetter implements ingest.DeadLetterer.
func (q *Queue) DeadLetter(ctx context.Context, items []ingest.DeadLetter) error {
	if !q.publishes.Enter() {
		return fmt.Errorf("store dead letter: %w", ingest.ErrClosed)
	}
	defer q.publishes.Leave()
	limit := q.MaxRecordSize()
	msgs := make([]kafka.Message, len(items))
	for i, it := range items {
		m := kafka.Message{Value: it.Data, Time: time.Now(),
			Headers: []kafka.Header{{Key: HeaderReason, Value: []byte(it.Reason)}}}
		if it.Cluster != "" {
			m.Headers = append(m.Headers, kafka.Header{Key: HeaderCluster, Value: []byte(it.Cluster)})
		}
		if len(m.Value) > limit {
			m.Value = m.Value[:limit]
			m.Headers = append(m.Headers, kafka.Header{Key: headerTruncated, Value: []byte(strconv.Itoa(len(it.Data)))})
		}
		msgs[i] = m
	}
	if err := q.dlw.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("store dead letter: %w", classify(err))
	}
	q.m.Dead.Add(len(items))
	return nil
}
