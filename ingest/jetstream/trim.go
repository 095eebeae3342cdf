package jetstream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The event stream keeps processed events for window rebuilds (Retention)
// but refuses new ones when full (MaxBytes), so that nothing unprocessed is
// dropped. Processed history must then give way to new events, or a busy
// cluster fills the stream with history and every publish is refused: past
// trimHigh of MaxBytes, the oldest acknowledged messages are purged down to
// trimLow. A window rebuild after a crash then re-reads less history than
// its span, which it already allows for (alerts of windows it may have cut
// short are not sent).
const (
	trimHigh = 0.8
	trimLow  = 0.6
)

// trimLoop trims the event stream every interval until the queue closes.
func (q *Queue) trimLoop(interval time.Duration) {
	defer close(q.trimmed)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-q.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			if n, err := q.trim(ctx); err != nil {
				q.log.Warn("trim processed events", "err", err)
			} else if n > 0 {
				q.log.Info("trimmed processed events to make room", "messages", n)
			}
			cancel()
		}
	}
}

// trim purges processed history when the stream is nearly full and returns
// how many messages it purged.
func (q *Queue) trim(ctx context.Context) (uint64, error) {
	si, err := q.events.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", EventStream, err)
	}
	st := si.State
	if st.Msgs == 0 || float64(st.Bytes) < trimHigh*float64(q.opts.MaxBytes) {
		return 0, nil
	}
	ci, err := q.cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read consumer %s: %w", ConsumerName, err)
	}
	// Below bound detection has acknowledged everything.
	bound := st.LastSeq + 1
	if ci.NumPending > 0 || ci.NumAckPending > 0 {
		bound = ci.AckFloor.Stream + 1
	}
	avg := float64(st.Bytes) / float64(st.Msgs)
	drop := uint64((float64(st.Bytes) - trimLow*float64(q.opts.MaxBytes)) / avg)
	target := min(st.FirstSeq+drop, bound)
	if target <= st.FirstSeq {
		return 0, nil // what fills the stream is not processed yet
	}
	if err := q.events.Purge(ctx, jetstream.WithPurgeSequence(target)); err != nil {
		return 0, fmt.Errorf("purge %s below %d: %w", EventStream, target, err)
	}
	n := target - st.FirstSeq
	q.m.trimmed.Add(int(n))
	return n, nil
}
