package ingest

import (
	"context"
	"errors"
	"hash/maphash"
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

// Dedup remembers the keys it has seen, at most MaxKeys of them, so memory
// stays bounded under any load. Keys live in two generations: new keys go
// into the current one, which becomes the previous one (dropping the one
// before) once it is a window old or holds half the key bound. A key is
// therefore remembered at least until the window has passed or half the key
// bound of new keys has come after it, whichever is first.
//
// It keeps 128-bit digests, not the keys, and never deletes one by one: its
// maps hold no pointers for the garbage collector to scan and stay fast under
// a steady stream of new keys. It is not safe for concurrent use; a queue
// owns one on its single consumer side.
type Dedup struct {
	window  time.Duration
	maxKeys int
	// seeds make the digests; they are random per process, which is enough
	// since a Dedup is never stored.
	seeds     [2]maphash.Seed
	cur, prev map[Digest]struct{}
	curStart  int64 // unix nanoseconds when cur took its first key
}

// Digest is what a Dedup keeps of a key. The zero Digest is the empty key,
// which is never a duplicate.
type Digest [2]uint64

// Default de-duplication bounds: the apiserver gives up on a batch after
// five attempts over about five minutes, and a queue redelivers within
// seconds.
const (
	DefaultDedupWindow  = 10 * time.Minute
	DefaultDedupMaxKeys = 1_000_000
)

// NewDedup returns a Dedup; zero or negative bounds take the defaults.
func NewDedup(window time.Duration, maxKeys int) *Dedup {
	if window <= 0 {
		window = DefaultDedupWindow
	}
	if maxKeys <= 0 {
		maxKeys = DefaultDedupMaxKeys
	}
	return &Dedup{window: window, maxKeys: max(maxKeys, 2),
		cur: map[Digest]struct{}{}, prev: map[Digest]struct{}{},
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
}

// Digest returns the digest of key for Seen and Forget. Two keys share a
// digest with a chance of about 2^-128.
func (d *Dedup) Digest(key []byte) Digest {
	if len(key) == 0 {
		return Digest{}
	}
	return Digest{maphash.Bytes(d.seeds[0], key), maphash.Bytes(d.seeds[1], key)}
}

// Seen reports whether key is remembered and remembers it if not.
func (d *Dedup) Seen(key Digest, now time.Time) bool {
	if key == (Digest{}) {
		return false
	}
	t := now.UnixNano()
	if _, ok := d.cur[key]; ok {
		return true
	}
	if _, ok := d.prev[key]; ok {
		return true
	}
	if len(d.cur) > 0 && (len(d.cur) >= d.maxKeys/2 || t-d.curStart >= int64(d.window)) {
		// The retired map is reused: its memory is already sized for a
		// generation.
		d.prev, d.cur = d.cur, d.prev
		clear(d.cur)
	}
	if len(d.cur) == 0 {
		d.curStart = t
	}
	d.cur[key] = struct{}{}
	return false
}

// Forget removes key, so that it is not a duplicate when it comes again
// (a batch that failed is delivered again and must pass).
func (d *Dedup) Forget(key Digest) {
	delete(d.cur, key)
	delete(d.prev, key)
}

// Len is the number of keys remembered.
func (d *Dedup) Len() int { return len(d.cur) + len(d.prev) }
