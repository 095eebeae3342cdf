// Package memqueue is an in-memory ingest.Queue for tests and for commands
// that need no durability. It keeps the Queue contract (limit, ErrFull,
// explicit acks, redelivery on a failed ack, de-duplication) but loses
// everything when the process exits.
package memqueue

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// Options configure a Queue.
type Options struct {
	// MaxPending is how many published and not yet acknowledged records
	// the queue holds before Publish returns ErrFull (default 100000).
	MaxPending int
	// MaxBatch is the most records one Read returns (default 1000).
	MaxBatch int
	// DedupWindow and DedupMaxKeys bound de-duplication (defaults
	// ingest.DefaultDedupWindow and ingest.DefaultDedupMaxKeys).
	DedupWindow  time.Duration
	DedupMaxKeys int
	// Now is the clock for de-duplication (default time.Now).
	Now func() time.Time
}

// Queue is an in-memory ingest.Queue and ingest.DeadLetterer.
type Queue struct {
	opts Options

	mu      sync.Mutex
	ready   chan struct{} // closed and replaced when entries arrive or on Close
	entries []ingest.Entry
	// pending counts entries published and not acknowledged.
	pending int
	closed  bool
	dead    []ingest.DeadLetter
	// dedup and digests are used by Read only.
	dedup   *ingest.Dedup[ingest.Digest]
	digests ingest.Digester
}

var (
	_ ingest.Queue        = (*Queue)(nil)
	_ ingest.DeadLetterer = (*Queue)(nil)
)

// MaxRecordSize is what Queue.MaxRecordSize returns.
const MaxRecordSize = 4 << 20

// New returns an empty queue.
func New(opts Options) *Queue {
	if opts.MaxPending <= 0 {
		opts.MaxPending = 100_000
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1000
	}
	if opts.DedupWindow <= 0 {
		opts.DedupWindow = ingest.DefaultDedupWindow
	}
	if opts.DedupMaxKeys <= 0 {
		opts.DedupMaxKeys = ingest.DefaultDedupMaxKeys
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Queue{opts: opts, ready: make(chan struct{}),
		dedup: ingest.NewDedup[ingest.Digest](opts.DedupMaxKeys, opts.DedupWindow), digests: ingest.NewDigester()}
}

// Publish implements ingest.Queue; records are copied.
func (q *Queue) Publish(ctx context.Context, entries []ingest.Entry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	for _, e := range entries {
		if len(e.Data) > MaxRecordSize {
			return fmt.Errorf("publish: record of %d bytes is over the limit of %d", len(e.Data), MaxRecordSize)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return fmt.Errorf("publish: %w", ingest.ErrClosed)
	}
	if q.pending+len(entries) > q.opts.MaxPending {
		return fmt.Errorf("publish %d records with %d pending of %d: %w", len(entries), q.pending, q.opts.MaxPending, ingest.ErrFull)
	}
	for _, e := range entries {
		e.Data = append([]byte(nil), e.Data...)
		q.entries = append(q.entries, e)
	}
	q.pending += len(entries)
	q.wake()
	return nil
}

// wake tells a blocked Read to look again; q.mu is held.
func (q *Queue) wake() {
	close(q.ready)
	q.ready = make(chan struct{})
}

// Read implements ingest.Source. Records come in the order published, a
// failed batch first again. Duplicates are acknowledged and dropped here; a
// batch whose records were all duplicates is not returned.
func (q *Queue) Read(ctx context.Context) (ingest.Batch, error) {
	for {
		q.mu.Lock()
		if len(q.entries) > 0 {
			n := min(len(q.entries), q.opts.MaxBatch)
			taken := q.entries[:n:n]
			q.entries = q.entries[n:]
			q.dedup.Advance(q.opts.Now())
			recs := make([]ingest.Record, 0, n)
			for _, e := range taken {
				if !q.dedup.Seen(q.digests.Digest([]byte(e.Key))) {
					recs = append(recs, e.Record)
				}
			}
			dups := n - len(recs)
			q.pending -= dups
			q.mu.Unlock()
			if len(recs) == 0 {
				continue
			}
			return ingest.Batch{Records: recs, Ack: q.ackFunc(recs, taken)}, nil
		}
		if q.closed {
			q.mu.Unlock()
			return ingest.Batch{}, fmt.Errorf("read: %w", ingest.ErrClosed)
		}
		ready := q.ready
		q.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return ingest.Batch{}, ctx.Err()
		}
	}
}

func (q *Queue) ackFunc(recs []ingest.Record, taken []ingest.Entry) ingest.AckFunc {
	var once sync.Once
	return func(_ context.Context, err error) error {
		done := false
		once.Do(func() { done = true })
		if !done {
			return fmt.Errorf("ack: batch already acknowledged")
		}
		q.mu.Lock()
		defer q.mu.Unlock()
		if err == nil {
			q.pending -= len(recs)
			return nil
		}
		// Redeliver: put the records back in front, still counted as
		// pending, with empty keys so de-duplication lets them through
		// (their keys stay remembered for later copies).
		back := make([]ingest.Entry, 0, len(recs)+len(q.entries))
		for _, r := range recs {
			back = append(back, ingest.Entry{Record: r})
		}
		q.entries = append(back, q.entries...)
		q.wake()
		return nil
	}
}

// Pending is the number of records published and not acknowledged.
func (q *Queue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending
}

// Drained reports whether every published record was acknowledged.
func (q *Queue) Drained(context.Context) (bool, error) { return q.Pending() == 0, nil }

// MaxRecordSize is the largest record Publish accepts; memory is the only
// limit, so it is the webhook's default event limit.
func (q *Queue) MaxRecordSize() int { return MaxRecordSize }

// DeadLetter implements ingest.DeadLetterer.
func (q *Queue) DeadLetter(_ context.Context, items []ingest.DeadLetter) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range items {
		it.Data = append([]byte(nil), it.Data...)
		q.dead = append(q.dead, it)
	}
	return nil
}

// DeadLetters returns the dead-lettered items so far.
func (q *Queue) DeadLetters() []ingest.DeadLetter {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]ingest.DeadLetter(nil), q.dead...)
}

// Close makes Publish fail with ErrClosed; Read returns the records still
// queued and then ErrClosed.
func (q *Queue) Close(context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		q.wake()
	}
	return nil
}
