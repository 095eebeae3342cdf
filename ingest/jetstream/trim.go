package jetstream

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-k8s/vigil/ingest/internal/jstrim"
)

// trimLoop makes room in the event stream every interval, purging
// processed history (jstrim), until the queue closes.
func (q *Queue) trimLoop(interval time.Duration) {
	defer close(q.trimmed)
	jstrim.Loop(q.done, interval, q.log, q.trim)
}

// trim purges processed history when the stream is nearly full and returns
// how many messages it purged.
func (q *Queue) trim(ctx context.Context) (uint64, error) {
	n, err := jstrim.Purge(ctx, q.events, q.opts.MaxBytes, q.cons)
	if err != nil {
		return 0, fmt.Errorf("trim %s: %w", EventStream, err)
	}
	q.m.trimmed.Add(int(n))
	return n, nil
}
