package jetstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"

	"github.com/vigil-k8s/vigil/ingest"
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

func TestQueue_PublishRead(t *testing.T) {
	q := open(t, t.TempDir(), func(o *Options) { o.MaxPayload = 64 << 10 })
	defer q.Close(context.Background())
	// 300 records of ~1 KiB over a 64 KiB payload limit: several messages.
	in := append(entries("a", 0, 200, 1000), entries("b", 200, 100, 1000)...)
	if err := q.Publish(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	queued := func(cluster string) int64 { return q.m.cluster(cluster).queued.Load() }
	if queued("a") != 200 || queued("b") != 100 {
		t.Errorf("queued events a=%d b=%d, want 200 and 100", queued("a"), queued("b"))
	}
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
	if n := q.m.publishedMsgs.Get(); n < 5 {
		t.Errorf("published %d messages, want the batch split under the payload limit", n)
	}
}

func TestQueue_Dedup(t *testing.T) {
	q := open(t, t.TempDir(), nil)
	defer q.Close(context.Background())
	in := entries("", 0, 50, 10)
	// The apiserver sends the same batch again after a slow answer.
	for range 2 {
		if err := q.Publish(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Publish(t.Context(), entries("", 50, 1, 10)); err != nil {
		t.Fatal(err)
	}
	got := readN(t, q, 51, nil)
	if len(got) != 51 {
		t.Fatalf("got %d records, want 51 (duplicates removed)", len(got))
	}
	if h := q.m.dedupHits("").Get(); h != 50 {
		t.Errorf("dedup hits = %d, want 50", h)
	}
}

func TestQueue_NakRedelivers(t *testing.T) {
	q := open(t, t.TempDir(), nil)
	defer q.Close(context.Background())
	if err := q.Publish(t.Context(), entries("", 0, 10, 10)); err != nil {
		t.Fatal(err)
	}
	readN(t, q, 10, errors.New("detection failed"))
	// Redelivered records bypass nothing: their keys were seen, but a nak
	// must deliver them again. The queue forgets keys of naked batches.
	got := readN(t, q, 10, nil)
	if len(got) != 10 {
		t.Fatalf("redelivered %d records, want 10", len(got))
	}
}

func TestQueue_RestartRedeliversUnacked(t *testing.T) {
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
	info, err := q.Replay(t.Context(), time.Hour, func(b ingest.Batch, _ ReplayInfo) error { replayed += len(b.Records); return nil })
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

func TestQueue_Full(t *testing.T) {
	q := open(t, t.TempDir(), func(o *Options) { o.MaxPendingBytes = 20 << 10 })
	defer q.Close(context.Background())
	if err := q.Publish(t.Context(), entries("", 0, 10, 1000)); err != nil {
		t.Fatal(err)
	}
	err := q.Publish(t.Context(), entries("", 10, 15, 1000))
	if !errors.Is(err, ingest.ErrFull) {
		t.Fatalf("publish over the limit: err = %v, want ErrFull", err)
	}
	readN(t, q, 10, nil)
	if err := q.Publish(t.Context(), entries("", 10, 15, 1000)); err != nil {
		t.Fatalf("publish after the consumer caught up: %v", err)
	}
}

func TestQueue_Closed(t *testing.T) {
	q := open(t, t.TempDir(), nil)
	q.Close(t.Context())
	if err := q.Publish(t.Context(), entries("", 0, 1, 1)); !errors.Is(err, ingest.ErrClosed) {
		t.Fatalf("publish after close: %v, want ErrClosed", err)
	}
}

func TestQueue_DeadLetterAndFingerprints(t *testing.T) {
	q := open(t, t.TempDir(), nil)
	defer q.Close(context.Background())
	if err := q.DeadLetter(t.Context(), []ingest.DeadLetter{{Cluster: "a", Reason: "malformed", Data: []byte("{")}}); err != nil {
		t.Fatal(err)
	}
	s, err := q.js.Stream(t.Context(), DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "{" || m.Header.Get(HeaderReason) != "malformed" {
		t.Errorf("dead letter = %q reason %q", m.Data, m.Header.Get(HeaderReason))
	}
	fps, err := q.Fingerprints(t.Context(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := fps.Has(t.Context(), "abc"); err != nil || ok {
		t.Fatalf("Has before Add = %v, %v", ok, err)
	}
	if err := fps.Add(t.Context(), "abc", []byte("r")); err != nil {
		t.Fatal(err)
	}
	if ok, err := fps.Has(t.Context(), "abc"); err != nil || !ok {
		t.Fatalf("Has after Add = %v, %v", ok, err)
	}
}

// TestQueue_Split checks that messages hold about rawTarget of frames,
// start again when the cluster changes, keep every entry in order, that an
// entry larger than the target goes alone, and that compression is used
// when it saves space and is undone by body.
func TestQueue_Split(t *testing.T) {
	q := &Queue{opts: Options{MaxPayload: DefaultMaxPayload}}
	var entries []ingest.Entry
	add := func(cluster string, n, size int, data func(i int) []byte) {
		for range n {
			i := len(entries)
			entries = append(entries, ingest.Entry{Key: fmt.Sprint("k", i),
				Record: ingest.Record{Cluster: cluster, Data: data(i)}})
		}
	}
	padded := func(size int) func(int) []byte {
		return func(i int) []byte { return []byte(fmt.Sprintf("%0*d", size, i)) }
	}
	random := func(i int) []byte {
		b := make([]byte, 3000)
		r := rand.NewChaCha8([32]byte{byte(i)})
		r.Read(b)
		return b
	}
	add("a", 400, 1000, padded(1000))
	add("a", 1, 300<<10, padded(300<<10))
	add("a", 10, 1000, padded(1000))
	add("b", 10, 1000, padded(1000))
	add("c", 3, 0, random)
	msgs, info := q.split(entries)
	var got []frame
	for i, m := range msgs {
		data, _, err := q.body(m.Data, m.Header)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if len(data) != info[i].raw {
			t.Errorf("message %d: %d bytes of frames, split said %d", i, len(data), info[i].raw)
		}
		compressed := m.Header.Get(HeaderEncoding) == encodingS2
		if cluster := m.Header.Get(HeaderCluster); compressed != (cluster != "c") {
			t.Errorf("message %d of cluster %s: compressed %v, want only compressible data compressed", i, cluster, compressed)
		}
		frames, err := decodeFrames(data, nil)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if len(frames) != info[i].events {
			t.Errorf("message %d holds %d entries, split said %d", i, len(frames), info[i].events)
		}
		if len(data) > rawTarget && len(frames) != 1 {
			t.Errorf("message %d holds %d bytes in %d entries, want at most %d or one entry", i, len(data), len(frames), rawTarget)
		}
		cluster := m.Header.Get(HeaderCluster)
		for _, f := range frames {
			if e := entries[len(got)]; e.Cluster != cluster {
				t.Errorf("entry %d of cluster %q in a message of %q", len(got), e.Cluster, cluster)
			}
			got = append(got, f)
		}
	}
	if len(got) != len(entries) {
		t.Fatalf("%d entries in the messages, want %d", len(got), len(entries))
	}
	for i, f := range got {
		if string(f.key) != entries[i].Key || string(f.data) != string(entries[i].Data) {
			t.Fatalf("entry %d: got key %s, want %s", i, f.key, entries[i].Key)
		}
	}
	if len(msgs) < 400*1000/rawTarget+4 {
		t.Errorf("%d messages, want the 400 KB of cluster a split near %d bytes", len(msgs), rawTarget)
	}
}

// TestQueue_Body checks that a message body that cannot be read is an
// error, not a panic or silent loss.
func TestQueue_Body(t *testing.T) {
	q := &Queue{opts: Options{MaxPayload: DefaultMaxPayload}}
	for _, c := range []struct {
		name string
		h    nats.Header
		data []byte
	}{
		{"corrupt s2", nats.Header{HeaderEncoding: {encodingS2}}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02}},
		{"truncated s2", nats.Header{HeaderEncoding: {encodingS2}}, s2.Encode(nil, bytes.Repeat([]byte("audit "), 1000))[:20]},
		{"unknown encoding", nats.Header{HeaderEncoding: {"zstd"}}, []byte("x")},
		{"size over the payload limit", nats.Header{HeaderEncoding: {encodingS2}}, s2.Encode(nil, make([]byte, DefaultMaxPayload+1))},
	} {
		if _, _, err := q.body(c.data, c.h); err == nil {
			t.Errorf("%s: no error", c.name)
		}
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
	bad.Header.Set(HeaderEncoding, encodingS2)
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
	if n := q.m.corrupt.Get(); n != 1 {
		t.Errorf("corrupt messages counted %d, want 1", n)
	}
}

// FuzzQueueBody feeds arbitrary stored bodies, plain or marked compressed,
// to what Read does with them: an error is fine, a panic or a hang is not.
func FuzzQueueBody(f *testing.F) {
	q := &Queue{opts: Options{MaxPayload: DefaultMaxPayload}}
	msgs, _ := q.split(entries("a", 0, 20, 200))
	f.Add(msgs[0].Data, true)
	f.Add(appendFrame(nil, ingest.Entry{Key: "k", Record: ingest.Record{Data: []byte(`{"auditID":"x"}`)}}), false)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1}, true)
	f.Fuzz(func(t *testing.T, data []byte, compressed bool) {
		h := nats.Header{}
		if compressed {
			h.Set(HeaderEncoding, encodingS2)
		}
		body, buf, err := q.body(data, h)
		if err != nil {
			return
		}
		if _, err := decodeFrames(body, nil); err != nil {
			return
		}
		q.putBuf(buf)
	})
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

// TestReadDeadLetters stores refused items, one over the payload limit,
// and reads them back once the queue is closed (not while it is open).
func TestReadDeadLetters(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, func(o *Options) { o.MaxPayload = 64 << 10 })
	big := bytes.Repeat([]byte("x"), 100<<10)
	items := []ingest.DeadLetter{
		{Cluster: "prod", Reason: "malformed: unexpected end of JSON", Data: []byte(`{"auditID":`)},
		{Cluster: "prod", Reason: "too_large: event is 102400 bytes", Data: big},
		{Reason: "wrong_kind: kind \"Pod\"", Data: []byte(`{"kind":"Pod"}`)},
	}
	if err := q.DeadLetter(t.Context(), items); err != nil {
		t.Fatal(err)
	}
	if err := ReadDeadLetters(t.Context(), dir, 0, func(StoredDeadLetter) error { return nil }); err == nil {
		t.Error("read the dead letters of a store in use")
	}
	if err := q.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	var got []StoredDeadLetter
	if err := ReadDeadLetters(t.Context(), dir, 0, func(d StoredDeadLetter) error {
		got = append(got, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(items) {
		t.Fatalf("read %d dead letters, want %d", len(got), len(items))
	}
	for i, d := range got {
		want := items[i]
		if d.Cluster != want.Cluster || d.Reason != want.Reason || d.Size != len(want.Data) || d.Time.IsZero() {
			t.Errorf("item %d: %+v, want cluster %q reason %q size %d", i, d, want.Cluster, want.Reason, len(want.Data))
		}
		if len(want.Data) < 60<<10 && string(d.Data) != string(want.Data) {
			t.Errorf("item %d: data %q, want %q", i, d.Data, want.Data)
		}
	}
	if len(got[1].Data) >= len(big) {
		t.Errorf("the item over the limit was stored whole (%d bytes)", len(got[1].Data))
	}
	n := 0
	if err := ReadDeadLetters(t.Context(), dir, 2, func(StoredDeadLetter) error { n++; return nil }); err != nil || n != 2 {
		t.Errorf("limit 2: read %d, %v", n, err)
	}
}

// TestClusterGauges checks the queued count and the lag: zero when nothing
// waits, growing while events wait and nothing is taken, and the queued
// count never below zero (events left by an earlier run are taken too).
func TestClusterGauges(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := &clusterGauges{}
	g.taken.Store(t0.UnixNano())
	if got := g.lag(t0.Add(time.Minute)); got != 0 {
		t.Errorf("lag with nothing queued = %v", got)
	}
	g.queued.Add(800)
	if got := g.lag(t0.Add(time.Minute)); got != time.Minute {
		t.Errorf("lag of events waiting since the start = %v, want 1m", got)
	}
	g.take(400, t0.Add(50*time.Second))
	if got := g.lag(t0.Add(70 * time.Second)); got != 20*time.Second {
		t.Errorf("lag = %v, want 20s since the newest message taken was written", got)
	}
	if got := g.lag(t0.Add(100 * time.Second)); got != 50*time.Second {
		t.Errorf("lag while stuck = %v, want 50s", got)
	}
	g.take(1000, t0.Add(90*time.Second))
	if g.queued.Load() != 0 || g.lag(t0.Add(100*time.Second)) != 0 {
		t.Errorf("after taking more than was counted: queued %d, lag %v", g.queued.Load(), g.lag(t0.Add(100*time.Second)))
	}
}
