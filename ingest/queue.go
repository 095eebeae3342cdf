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
// Records come back with the Data and Cluster they were published with; their
// Origin is the record's position in the queue when the queue has positions,
// else the published Origin. Whether one publisher's entries come back in the
// order published is the backend's to document. The queuetest package checks
// all of this.
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

// ReplayInfo describes what a durable queue re-read of the events detection
// had already acknowledged, to rebuild its state after a restart.
type ReplayInfo struct {
	// Floor is the queue position (a stream sequence) of the last event
	// detection had acknowledged.
	Floor uint64
	// Start is the write time of the first message re-read; End that of
	// the floor message.
	Start, End time.Time
	Messages   int
	Records    int
	// FromStart is set when the re-read began at the queue's first
	// message ever: no history was cut off.
	FromStart bool
}
