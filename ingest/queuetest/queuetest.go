// Package queuetest is the contract of ingest.Queue as a test suite. An
// implementation's tests call Run with a way to open it; each behaviour is
// a subtest, and behaviours an implementation does not promise are declared
// in its Harness and skipped.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// EntrySize bounds the Data and Key of every entry the suite publishes,
// together; a queue with a byte limit sizes Limits with it.
const EntrySize = 512

// Limits ask for a queue with small bounds; the zero Limits asks for the
// implementation's defaults.
type Limits struct {
	// MaxPending, when positive, asks for a queue that refuses Publish with
	// an error wrapping ingest.ErrFull once about MaxPending entries are
	// published and not acknowledged (a queue that bounds bytes allows
	// MaxPending×EntrySize).
	MaxPending int
}

// Harness is one queue under test and what its implementation promises.
type Harness struct {
	// Queue is new and empty. The suite closes it.
	Queue ingest.Queue
	// Reopen opens Queue's store again after the suite closed Queue; nil
	// for a queue that keeps nothing past Close. The suite closes what it
	// returns.
	Reopen func(t *testing.T) ingest.Queue
	// Ordered says that Read returns the entries of one publisher, which
	// calls Publish once after another, in the order it published them.
	Ordered bool
	// OrderedByKey says the same of the entries of each partition key
	// (user.username) only: a partitioned queue keeps order within a
	// partition.
	OrderedByKey bool
}

// Opener opens a new queue for one subtest, with the limits it asks for.
type Opener func(t *testing.T, l Limits) Harness

// Run runs the contract against the queues open makes, one per subtest.
func Run(t *testing.T, open Opener) {
	for _, c := range []struct {
		name string
		run  func(t *testing.T, open Opener)
	}{
		{"PublishReadAck", testPublishReadAck},
		{"BatchContents", testBatchContents},
		{"RedeliverAfterFailedAck", testRedeliverAfterFailedAck},
		{"RedeliverAfterReopen", testRedeliverAfterReopen},
		{"Duplicates", testDuplicates},
		{"Order", testOrder},
		{"CloseWhilePublishing", testCloseWhilePublishing},
		{"Full", testFull},
		{"AckTwice", testAckTwice},
		{"ReadHonoursContext", testReadHonoursContext},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, open) })
	}
}

// openDefault opens a queue with default limits and closes it at the end.
func openDefault(t *testing.T, open Opener) Harness {
	h := open(t, Limits{})
	t.Cleanup(func() { h.Queue.Close(context.Background()) })
	return h
}

// readTimeout bounds the wait for records that were published.
const readTimeout = 20 * time.Second

// entries returns n entries of cluster numbered from from, with distinct
// keys and data.
func entries(cluster string, from, n int) []ingest.Entry {
	return userEntries(cluster, "", from, n)
}

// userEntries is entries whose events name a user ("" for none).
func userEntries(cluster, user string, from, n int) []ingest.Entry {
	out := make([]ingest.Entry, n)
	var userField string
	if user != "" {
		userField = fmt.Sprintf(`"user":{"username":%q},`, user)
	}
	for i := range out {
		id := fmt.Sprintf("id-%08d", from+i)
		data := fmt.Sprintf(`{"auditID":%q,"stage":"ResponseComplete","verb":"get",%s"pad":%q}`, id, userField, strings.Repeat("x", 200))
		out[i] = ingest.Entry{Key: ingest.DedupKey(id, "ResponseComplete"),
			Record: ingest.Record{Data: []byte(data), Cluster: cluster, Origin: "test:" + id}}
	}
	return out
}

// readN reads batches until n records arrived, acknowledging each with
// ackErr, and returns copies of the records.
func readN(t *testing.T, q ingest.Queue, n int, ackErr error) []ingest.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), readTimeout)
	defer cancel()
	var got []ingest.Record
	for len(got) < n {
		b, err := q.Read(ctx)
		if err != nil {
			t.Fatalf("read after %d of %d records: %v", len(got), n, err)
		}
		if len(b.Records) == 0 || b.Ack == nil {
			t.Fatalf("Read returned %d records and Ack %p", len(b.Records), b.Ack)
		}
		for _, r := range b.Records {
			r.Data = slices.Clone(r.Data)
			got = append(got, r)
		}
		if err := b.Ack(ctx, ackErr); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// expectEmpty checks that nothing more is delivered.
func expectEmpty(t *testing.T, q ingest.Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	b, err := q.Read(ctx)
	if err == nil {
		t.Fatalf("%d more records, the first %.60s", len(b.Records), b.Records[0].Data)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read from an empty queue: %v, want the context's deadline", err)
	}
}

// readRest reads and acknowledges what is delivered until nothing more
// comes for a while.
func readRest(t *testing.T, q ingest.Queue) []ingest.Record {
	t.Helper()
	var got []ingest.Record
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		b, err := q.Read(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Records {
			r.Data = slices.Clone(r.Data)
			got = append(got, r)
		}
		if err := b.Ack(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// sameRecords checks that got holds the data and cluster of want, each
// once, in any order.
func sameRecords(t *testing.T, got []ingest.Record, want []ingest.Entry) {
	t.Helper()
	count := map[[2]string]int{}
	for _, e := range want {
		count[[2]string{string(e.Data), e.Cluster}]++
	}
	for _, r := range got {
		k := [2]string{string(r.Data), r.Cluster}
		if count[k] == 0 {
			t.Fatalf("unexpected or repeated record %.60s (cluster %q)", r.Data, r.Cluster)
		}
		count[k]--
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
}

// containsAll reports whether got holds the data of every entry of want.
func containsAll(got []ingest.Record, want []ingest.Entry) bool {
	have := map[string]bool{}
	for _, r := range got {
		have[string(r.Data)] = true
	}
	for _, e := range want {
		if !have[string(e.Data)] {
			return false
		}
	}
	return true
}
