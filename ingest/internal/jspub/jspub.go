// Package jspub holds what the embedded and the external NATS queues do
// alike when they publish to JetStream: ride out the client's
// back-pressure and name the server's refusals as the ingest errors.
package jspub

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
)

// Async sends one message, retrying while the async window is stalled:
// that is the client's back-pressure, not a failure. stalled, when set, is
// called at each stall; closed reports that the queue is closing, which
// ends the retries with ingest.ErrClosed.
func Async(ctx context.Context, js jetstream.JetStream, m *nats.Msg, stalled func(), closed func() bool) (jetstream.PubAckFuture, error) {
	for {
		f, err := js.PublishMsgAsync(m, jetstream.WithStallWait(200*time.Millisecond))
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return nil, fmt.Errorf("publish: %w", Classify(err))
		}
		if stalled != nil {
			stalled()
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, fmt.Errorf("publish: queue stalled: %w", ctx.Err())
		}
		if closed() {
			return nil, fmt.Errorf("publish: %w", ingest.ErrClosed)
		}
	}
}

// Classify maps server refusals for lack of room to ingest.ErrFull and a
// closed connection to ingest.ErrClosed.
func Classify(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10077, 10023, 10047: // store failed (stream full), insufficient resources, storage limits
			return fmt.Errorf("%w: %v", ingest.ErrFull, err)
		}
	}
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining) {
		return fmt.Errorf("%w: %v", ingest.ErrClosed, err)
	}
	return err
}

// The headers of a dead letter: why it was refused, the cluster it came
// from, and its size when it was cut to fit a message.
const (
	HeaderReason    = "Vigil-Reason"
	HeaderCluster   = "Vigil-Cluster"
	HeaderTruncated = "Vigil-Truncated"
)

// DeadLetter makes the message of a dead letter on subject, its data cut
// to limit bytes.
func DeadLetter(subject string, it ingest.DeadLetter, limit int) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(HeaderReason, it.Reason)
	if it.Cluster != "" {
		m.Header.Set(HeaderCluster, it.Cluster)
	}
	m.Data = it.Data
	if len(m.Data) > limit {
		m.Data = m.Data[:limit]
		m.Header.Set(HeaderTruncated, strconv.Itoa(len(it.Data)))
	}
	return m
}
