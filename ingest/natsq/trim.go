package natsq

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest/internal/jstrim"
)

// trimInterval is how often the event stream is checked for room.
const trimInterval = 10 * time.Second

// trimLoop makes room in the event stream every trimInterval, purging
// what every partition has processed (jstrim), until the queue closes.
func (q *Queue) trimLoop() {
	jstrim.Loop(q.done, trimInterval, q.log, q.trim)
}

// trim purges processed history when the stream is nearly full and
// returns how many messages it purged.
func (q *Queue) trim(ctx context.Context) (uint64, error) {
	cons := make([]jetstream.Consumer, len(q.parts))
	for i, p := range q.parts {
		cons[i] = p.cons
	}
	n, err := jstrim.Purge(ctx, q.events, q.opts.MaxBytes, cons...)
	if err != nil {
		return 0, fmt.Errorf("trim %s: %w", EventStream, err)
	}
	q.trimmed.Add(int(n))
	return n, nil
}
