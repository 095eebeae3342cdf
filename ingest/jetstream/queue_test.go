package jetstream

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/frames"
	"github.com/vigil-k8s/vigil/ingest/queuetest"
)

func entries(cluster string, from, n, size int) []ingest.Entry {
	out := make([]ingest.Entry, n)
	for i := range out {
		id := fmt.Sprintf("id-%06d", from+i)
		data := fmt.Sprintf(`{"auditID":%q,"stage":"ResponseComplete","pad":%q}`, id, strings.Repeat("x", size))
		out[i] = ingest.Entry{Record: ingest.Record{Data: []byte(data), Cluster: cluster}, Key: ingest.DedupKey(id, "ResponseComplete")}
	}
	return out
}

func open(t *testing.T, dir string, mod func(*Options)) *Queue {
	t.Helper()
	o := Options{Dir: dir}
	if mod != nil {
		mod(&o)
	}
	q, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// readN reads batches until n records arrived, acking each with ackErr.
func readN(t *testing.T, q *Queue, n int, ackErr error) []ingest.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var got []ingest.Record
	for len(got) < n {
		b, err := q.Read(ctx)
		if err != nil {
			t.Fatalf("read after %d of %d records: %v", len(got), n, err)
		}
		for _, r := range b.Records {
			r.Data = append([]byte(nil), r.Data...)
			got = append(got, r)
		}
		if err := b.Ack(ctx, ackErr); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// TestQueue_Contract runs the queue contract against the embedded queue.
func TestQueue_Contract(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, l queuetest.Limits) queuetest.Harness {
		dir := t.TempDir()
		limit := func(o *Options) { o.MaxPendingBytes = int64(l.MaxPending) * queuetest.EntrySize }
		return queuetest.Harness{
			Queue:   open(t, dir, limit),
			Reopen:  func(t *testing.T) ingest.Queue { return open(t, dir, limit) },
			Ordered: true,
		}
	})
}

func TestQueue_PublishRead(t *testing.T) {
	q := open(t, t.TempDir(), func(o *Options) { o.MaxPayload = 64 << 10 })
	defer q.Close(context.Background())
	// 300 records of ~1 KiB over a 64 KiB payload limit: several messages.
	in := append(entries("a", 0, 200, 1000), entries("b", 200, 100, 1000)...)
	// The second publish is a retry of part of the first; reading the
	// third's record means the retry was read (and dropped) before it.
	last := entries("b", 300, 1, 10)
	for _, batch := range [][]ingest.Entry{in, in[:50], last} {
		if err := q.Publish(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
	queued := func(cluster string) int64 { return q.m.cluster(cluster).queued.Load() }
	if queued("a") != 250 || queued("b") != 101 {
		t.Errorf("queued events a=%d b=%d, want 250 and 101", queued("a"), queued("b"))
	}
	in = append(in, last...)
	got := readN(t, q, len(in), nil)
	if queued("a") != 0 || queued("b") != 0 {
		t.Errorf("queued events after reading all: a=%d b=%d", queued("a"), queued("b"))
	}
	var prom bytes.Buffer
	q.opts.Metrics.WritePrometheus(&prom)
	for _, want := range []string{`vigil_queue_queued_events{cluster="a"} 0`, `vigil_queue_lag_seconds{cluster="b"} `} {
		if !strings.Contains(prom.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if len(got) != len(in) {
		t.Fatalf("got %d records, want %d", len(got), len(in))
	}
	for i, r := range got {
		if string(r.Data) != string(in[i].Data) || r.Cluster != in[i].Cluster {
			t.Fatalf("record %d = %.40s (cluster %q), want %.40s (cluster %q)", i, r.Data, r.Cluster, in[i].Data, in[i].Cluster)
		}
	}
	if h := q.m.DedupHits("a").Get(); h != 50 {
		t.Errorf("dedup hits = %d, want 50", h)
	}
	if n := q.m.PublishedMsgs.Get(); n < 5 {
		t.Errorf("published %d messages, want the batch split under the payload limit", n)
	}
}

func TestQueue_RestartReplays(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, nil)
	if err := q.Publish(t.Context(), entries("c", 0, 30, 10)); err != nil {
		t.Fatal(err)
	}
	readN(t, q, 10, nil) // may take more than 10 if delivered together
	if err := q.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	q = open(t, dir, nil)
	defer q.Close(context.Background())
	// Replay hands back what was acknowledged; Read what was not.
	var replayed int
	info, err := q.Replay(t.Context(), time.Hour, func(b ingest.Batch, _ ingest.ReplayInfo) error { replayed += len(b.Records); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if info.Floor == 0 || replayed == 0 {
		t.Fatalf("replay floor %d, %d records; want the acknowledged records", info.Floor, replayed)
	}
	rest := readN(t, q, 30-replayed, nil)
	if replayed+len(rest) != 30 {
		t.Fatalf("replayed %d + read %d, want 30", replayed, len(rest))
	}
}

// TestQueue_PendingAfterRestart checks that the unprocessed event data
// left by an earlier run is estimated in event bytes, though the store
// keeps it compressed.
func TestQueue_PendingAfterRestart(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, nil)
	in := entries("a", 0, 2000, 1000)
	if err := q.Publish(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	want := q.Pending()
	if err := q.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	q = open(t, dir, nil)
	defer q.Close(context.Background())
	if got := q.Pending(); got < want*8/10 || got > want*12/10 {
		t.Errorf("pending after restart %d bytes, want about %d", got, want)
	}
}

// TestQueue_CorruptMessage checks that a stored message that cannot be
// read back is counted and logged, and the messages around it still arrive.
func TestQueue_CorruptMessage(t *testing.T) {
	q := open(t, t.TempDir(), nil)
	defer q.Close(context.Background())
	if err := q.Publish(t.Context(), entries("a", 0, 10, 100)); err != nil {
		t.Fatal(err)
	}
	bad := nats.NewMsg(EventSubject)
	bad.Header.Set(HeaderEncoding, frames.EncodingS2)
	bad.Data = []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3}
	if _, err := q.js.PublishMsg(t.Context(), bad); err != nil {
		t.Fatal(err)
	}
	if err := q.Publish(t.Context(), entries("a", 10, 10, 100)); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, q, 20, nil); len(got) != 20 {
		t.Fatalf("got %d records, want 20", len(got))
	}
	if n := q.m.Corrupt.Get(); n != 1 {
		t.Errorf("corrupt messages counted %d, want 1", n)
	}
}

// TestQueue_OneProcessPerStore checks that a second queue on the same
// store is refused with a message naming the holder, and allowed once the
// first is closed.
func TestQueue_OneProcessPerStore(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, nil)
	_, err := Open(t.Context(), Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "in use by another vigil (pid ") {
		t.Fatalf("second Open on one store: %v, want refused as in use", err)
	}
	if err := q.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	q = open(t, dir, nil)
	q.Close(t.Context())
}
