package memqueue

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vigil-k8s/vigil/ingest"
)

func entries(from, n int) []ingest.Entry {
	out := make([]ingest.Entry, n)
	for i := range out {
		id := fmt.Sprint(from + i)
		out[i] = ingest.Entry{Record: ingest.Record{Data: []byte(id)}, Key: ingest.DedupKey(id, "ResponseComplete")}
	}
	return out
}

func TestQueue_Contract(t *testing.T) {
	q := New(Options{MaxPending: 10})
	if err := q.Publish(t.Context(), entries(0, 8)); err != nil {
		t.Fatal(err)
	}
	if err := q.Publish(t.Context(), entries(8, 3)); !errors.Is(err, ingest.ErrFull) {
		t.Fatalf("over the limit: %v, want ErrFull", err)
	}
	if err := q.Publish(t.Context(), entries(0, 2)); err != nil { // duplicates
		t.Fatal(err)
	}
	b, err := q.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Records) != 8 || q.Pending() != 8 {
		t.Fatalf("read %d records, %d pending; want 8 and 8 (duplicates dropped)", len(b.Records), q.Pending())
	}
	b.Ack(t.Context(), errors.New("failed"))
	if err := b.Ack(t.Context(), nil); err == nil {
		t.Error("second ack succeeded")
	}
	b, err = q.Read(t.Context())
	if err != nil || len(b.Records) != 8 {
		t.Fatalf("redelivery: %d records, %v", len(b.Records), err)
	}
	b.Ack(t.Context(), nil)
	if q.Pending() != 0 {
		t.Fatalf("pending %d after ack", q.Pending())
	}
	q.Close(t.Context())
	if err := q.Publish(t.Context(), entries(20, 1)); !errors.Is(err, ingest.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if _, err := q.Read(t.Context()); !errors.Is(err, ingest.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}
