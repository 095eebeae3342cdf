package natsq

import (
	"context"
	"fmt"
)

// Pending is the estimate of published and unprocessed event bytes.
func (q *Queue) Pending() int64 { return q.pending.Bytes() }

// samplePending reads what every partition consumer has waiting and
// unacknowledged, and sets the gauges of the partitions this replica
// holds.
func (q *Queue) samplePending(ctx context.Context) (int64, error) {
	var total int64
	for _, pt := range q.parts {
		ci, err := pt.cons.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("read consumer %s%d: %w", consumerPrefix, pt.n, err)
		}
		total += int64(ci.NumPending) + int64(ci.NumAckPending)
		if pt.wasPinned() {
			pt.g.Pending.Store(int64(ci.NumPending))
		}
	}
	return total, nil
}
