package ingest

import "context"

// Record is one audit event as raw JSON, as it travels from a source through
// a queue to detection.
type Record struct {
	// Data is the event's JSON. The receiver of a Batch must not modify it
	// and must copy it to keep it after Ack.
	Data []byte
	// Cluster names the cluster the event came from ("" when unknown).
	Cluster string
	// Origin says where the record came from for error messages, such as
	// "audit.log:1234"; empty when the source has no positions. Like Data,
	// it is valid until Ack.
	Origin string
}

// AckFunc reports that a batch has been fully processed (err == nil) or has
// failed and should be delivered again (err != nil). It is called exactly
// once per batch.
type AckFunc func(ctx context.Context, err error) error

// Batch is a group of records with one acknowledgement.
type Batch struct {
	Records []Record
	// Ack may be nil for sources that need no acknowledgement.
	Ack AckFunc
}

// Source delivers batches of records.
type Source interface {
	// Read blocks until a batch is available, ctx is done, or the source is
	// exhausted (io.EOF). The batch's memory belongs to the caller until it
	// calls Ack. Read is called from one goroutine.
	Read(ctx context.Context) (Batch, error)
	// Close releases the source; pending batches that were not acked are
	// redelivered by sources that can.
	Close(ctx context.Context) error
}
