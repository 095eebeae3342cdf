// Package jstrim makes room in a JetStream event stream that keeps
// processed events for window rebuilds (retention by age) but refuses new
// ones when full (MaxBytes), so that nothing unprocessed is dropped.
// Processed history must then give way to new events, or a busy cluster
// fills the stream with history and every publish is refused: past High of
// MaxBytes, the oldest messages every consumer has acknowledged are purged
// down to Low. A window rebuild after a crash then re-reads less history
// than its span, which it already allows for (alerts of windows it may have
// cut short are not sent).
package jstrim

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const (
	High = 0.8
	Low  = 0.6
)

// Purge purges the stream's acknowledged history when it holds High of
// maxBytes or more, down to Low, and returns how many messages went.
// consumers are those that must have acknowledged a message before it
// goes.
func Purge(ctx context.Context, stream jetstream.Stream, maxBytes int64, consumers ...jetstream.Consumer) (uint64, error) {
	si, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read stream: %w", err)
	}
	st := si.State
	if st.Msgs == 0 || float64(st.Bytes) < High*float64(maxBytes) {
		return 0, nil
	}
	// Below bound every consumer has acknowledged everything.
	bound := st.LastSeq + 1
	for _, c := range consumers {
		ci, err := c.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("read consumer: %w", err)
		}
		if ci.NumPending > 0 || ci.NumAckPending > 0 {
			bound = min(bound, ci.AckFloor.Stream+1)
		}
	}
	avg := float64(st.Bytes) / float64(st.Msgs)
	drop := uint64((float64(st.Bytes) - Low*float64(maxBytes)) / avg)
	target := min(st.FirstSeq+drop, bound)
	if target <= st.FirstSeq {
		return 0, nil // what fills the stream is not processed yet
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(target)); err != nil {
		return 0, fmt.Errorf("purge below %d: %w", target, err)
	}
	return target - st.FirstSeq, nil
}

// Loop calls trim every interval until done is closed, logging what it
// did.
func Loop(done <-chan struct{}, interval time.Duration, log *slog.Logger, trim func(context.Context) (uint64, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			if n, err := trim(ctx); err != nil {
				log.Warn("trim processed events", "err", err)
			} else if n > 0 {
				log.Info("trimmed processed events to make room", "messages", n)
			}
			cancel()
		}
	}
}
