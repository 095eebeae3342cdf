package ingest

import (
	"context"
	"errors"
	"time"
)

// Entry is a record on its way into a queue, with the key that identifies
// its event for de-duplication.
type Entry struct {
	Record
	// Key is the event's (auditID, stage) joined by DedupKey; an empty key
	// turns de-duplication off for the entry.
	Key string
}

// DedupKey is the de-duplication key of an event: the apiserver retries a
// batch after any error and a queue redelivers what was not acknowledged,
// and both bring back the same (auditID, stage) pairs.
func DedupKey(auditID, stage string) string { return auditID + "/" + stage }

// Errors a queue returns from Publish. Callers map them to the answer they
// give their own client (the webhook answers 429 and 503).
var (
	// ErrFull means the queue holds as much unprocessed data as it is
	// allowed to; the caller should retry later.
	ErrFull = errors.New("queue full")
	// ErrClosed means the queue is shutting down or closed.
	ErrClosed = errors.New("queue closed")
)

// Queue is a durable hand-off between receivers (the webhook) and detection.
// Publishers call Publish from any number of goroutines; one consumer calls
// Read. Each Batch that Read returns must be acknowledged exactly once with
// its Ack: Ack(ctx, nil) after detection finished with it and its alerts
// were handed to the alert path, Ack(ctx, err) to have it delivered again.
// Batches are de-duplicated on Entry.Key within a bounded window, so a
// redelivered or re-sent event reaches Read once while the window holds it.
type Queue interface {
	// Publish stores the entries and returns nil only once all of them are
	// durable (what durable means is the backend's to document). It blocks
	// until then or until ctx is done; on error none, some or all entries
	// may have been stored, which is safe because the publisher retries and
	// the consumer side removes duplicates. It returns an error wrapping
	// ErrFull when the queue is over its limit and ErrClosed after Close.
	// The queue does not keep entries' memory after Publish returns.
	// Publish is safe for concurrent use.
	Publish(ctx context.Context, entries []Entry) error
	Source
}

// DeadLetter is an item a receiver refused while accepting the rest of its
// request: malformed, not an audit event, or over the size limit.
type DeadLetter struct {
	Cluster string
	// Reason says what is wrong with the item, in one line.
	Reason string
	// Data is the item as received, possibly cut to the backend's limit.
	Data []byte
}

// DeadLetterer stores refused items for a person to inspect. Store blocks
// until the item is durable or ctx is done, does not keep Data after it
// returns, and is safe for concurrent use.
type DeadLetterer interface {
	DeadLetter(ctx context.Context, items []DeadLetter) error
}

// Dedup remembers the keys it has seen within a bounded window: no older
// than Window and no more than MaxKeys, whichever is smaller, so memory
// stays bounded under any load. It is not safe for concurrent use; a queue
// owns one on its single consumer side.
type Dedup struct {
	window  time.Duration
	maxKeys int
	seen    map[string]int64 // key -> unix nanoseconds when first seen
	// fifo holds the keys in insertion order from head; entries before
	// head are gone.
	fifo []dedupEntry
	head int
}

type dedupEntry struct {
	key string
	at  int64
}

// Default de-duplication bounds: the apiserver gives up on a batch after
// five attempts over about five minutes.
const (
	DefaultDedupWindow  = 10 * time.Minute
	DefaultDedupMaxKeys = 500_000
)

// NewDedup returns a Dedup; zero or negative bounds take the defaults.
func NewDedup(window time.Duration, maxKeys int) *Dedup {
	if window <= 0 {
		window = DefaultDedupWindow
	}
	if maxKeys <= 0 {
		maxKeys = DefaultDedupMaxKeys
	}
	return &Dedup{window: window, maxKeys: maxKeys, seen: make(map[string]int64)}
}

// Seen reports whether key was seen within the window and records it if
// not. An empty key is never a duplicate.
func (d *Dedup) Seen(key string, now time.Time) bool {
	if key == "" {
		return false
	}
	t := now.UnixNano()
	d.evict(t)
	if _, ok := d.seen[key]; ok {
		return true
	}
	d.seen[key] = t
	d.fifo = append(d.fifo, dedupEntry{key: key, at: t})
	// Entries of forgotten keys free nothing when popped: pop until the
	// bound holds.
	for len(d.seen) > d.maxKeys && d.head < len(d.fifo) {
		d.pop()
	}
	return false
}

// Forget removes key, so that it is not a duplicate when it comes again
// (a batch that failed is delivered again and must pass).
func (d *Dedup) Forget(key string) { delete(d.seen, key) }

// Len is the number of keys remembered.
func (d *Dedup) Len() int { return len(d.seen) }

func (d *Dedup) evict(now int64) {
	limit := now - int64(d.window)
	for d.head < len(d.fifo) && d.fifo[d.head].at < limit {
		d.pop()
	}
}

func (d *Dedup) pop() {
	e := d.fifo[d.head]
	d.fifo[d.head] = dedupEntry{}
	d.head++
	// The key may have been forgotten and seen again since; only the
	// entry that recorded it removes it.
	if at, ok := d.seen[e.key]; ok && at == e.at {
		delete(d.seen, e.key)
	}
	// Compact once the dead prefix dominates, so the slice does not grow
	// without bound.
	if d.head > 1024 && d.head*2 > len(d.fifo) {
		n := copy(d.fifo, d.fifo[d.head:])
		clear(d.fifo[n:])
		d.fifo = d.fifo[:n]
		d.head = 0
	}
}
