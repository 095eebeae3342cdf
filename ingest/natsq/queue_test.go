package natsq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/jstrim"
	"github.com/vigil-k8s/vigil/ingest/internal/natstest"
	"github.com/vigil-k8s/vigil/ingest/partition"
	"github.com/vigil-k8s/vigil/ingest/queuetest"
)

func open(t *testing.T, url string, mod func(*Options)) *Queue {
	t.Helper()
	o := Options{URL: url, Replicas: 1, Partitions: 4, Member: "m0"}
	if mod != nil {
		mod(&o)
	}
	q, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// clean deletes what a queue left on the server.
func clean(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for _, s := range []string{EventStream, DeadLetterStream} {
		js.DeleteStream(t.Context(), s)
	}
}

// TestQueue_Contract runs the queue contract against the queue on one
// server; every subtest starts from empty streams.
func TestQueue_Contract(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	queuetest.Run(t, func(t *testing.T, l queuetest.Limits) queuetest.Harness {
		clean(t, url)
		limit := func(o *Options) { o.MaxPendingBytes = int64(l.MaxPending) * queuetest.EntrySize }
		return queuetest.Harness{
			Queue:        open(t, url, limit),
			Reopen:       func(t *testing.T) ingest.Queue { return open(t, url, limit) },
			OrderedByKey: true,
		}
	})
}

func event(user string, i int) ingest.Entry {
	id := fmt.Sprintf("%s-%06d", user, i)
	data := fmt.Sprintf(`{"auditID":%q,"stage":"ResponseComplete","user":{"username":%q},"pad":%q}`, id, user, strings.Repeat("x", 100))
	return ingest.Entry{Record: ingest.Record{Data: []byte(data), Cluster: "c"}, Key: ingest.DedupKey(id, "ResponseComplete")}
}

// readAll reads until n records came, acknowledging each batch, and
// returns them by partition with the announcements seen.
func readAll(t *testing.T, q *Queue, n int) (map[int][]string, []partition.Batch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got := map[int][]string{}
	var changes []partition.Batch
	for count := 0; count < n; {
		b, err := q.ReadPartition(ctx)
		if err != nil {
			t.Fatalf("read after %d of %d records: %v", count, n, err)
		}
		if b.Change != partition.Records {
			changes = append(changes, b)
			continue
		}
		for _, r := range b.Records {
			got[b.Partition] = append(got[b.Partition], string(r.Data))
		}
		count += len(b.Records)
		if err := b.Ack(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	return got, changes
}

// TestQueue_PartitionByKey checks that the events of one user all come
// from one partition, in the order published, that the users spread over
// the partitions, and that each partition is announced as gained before
// its first records.
func TestQueue_PartitionByKey(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	q := open(t, url, func(o *Options) { o.Partitions = 8 })
	defer q.Close(context.Background())
	var in []ingest.Entry
	for i := range 50 {
		for u := range 20 {
			in = append(in, event(fmt.Sprintf("user-%d", u), i))
		}
	}
	for i := 0; i < len(in); i += 100 {
		if err := q.Publish(t.Context(), in[i:i+100]); err != nil {
			t.Fatal(err)
		}
	}
	got, changes := readAll(t, q, len(in))
	userPart := map[string]int{}
	for p, recs := range got {
		last := map[string]string{}
		for _, r := range recs {
			var user string
			for u := range 20 {
				if strings.Contains(r, fmt.Sprintf(`"username":"user-%d"`, u)) {
					user = fmt.Sprintf("user-%d", u)
				}
			}
			if prev, ok := userPart[user]; ok && prev != p {
				t.Fatalf("%s in partitions %d and %d", user, prev, p)
			}
			userPart[user] = p
			if r < last[user] {
				t.Fatalf("%s out of order in partition %d: %.40s after %.40s", user, p, r, last[user])
			}
			last[user] = r
		}
	}
	if len(got) < 4 {
		t.Errorf("20 users in %d of 8 partitions, want them spread", len(got))
	}
	gained := map[int]bool{}
	for _, c := range changes {
		if c.Change != partition.Gained || gained[c.Partition] {
			t.Errorf("unexpected announcement %v of partition %d", c.Change, c.Partition)
		}
		gained[c.Partition] = true
	}
	for p := range got {
		if !gained[p] {
			t.Errorf("records of partition %d without its gain announced", p)
		}
	}
	if owned := q.Owned(); len(owned) != len(got) {
		t.Errorf("owns partitions %v, read from %d", owned, len(got))
	}
}

// TestQueue_RefusesOtherPartitionCount checks that a stream created with
// one partition count is not silently re-partitioned.
func TestQueue_RefusesOtherPartitionCount(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	q := open(t, url, nil)
	q.Close(t.Context())
	_, err := Open(t.Context(), Options{URL: url, Replicas: 1, Partitions: 6, Member: "m0"})
	if err == nil || !strings.Contains(err.Error(), "partition count cannot change") {
		t.Fatalf("open with another partition count: %v", err)
	}
}

// TestQueue_ReplayPartition checks that a partition's acknowledged events
// are re-read, and only those of that partition.
func TestQueue_ReplayPartition(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	q := open(t, url, nil)
	var in []ingest.Entry
	for i := range 10 {
		for u := range 8 {
			in = append(in, event(fmt.Sprintf("user-%d", u), i))
		}
	}
	if err := q.Publish(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, q, len(in))
	q.Close(t.Context())
	q = open(t, url, nil)
	defer q.Close(context.Background())
	for p, want := range got {
		var replayed []string
		info, err := q.ReplayPartition(t.Context(), p, partition.From{Span: time.Hour}, func(b ingest.Batch, _ ingest.ReplayInfo) error {
			for _, r := range b.Records {
				replayed = append(replayed, string(r.Data))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(replayed, "\n") != strings.Join(want, "\n") {
			t.Errorf("partition %d: replayed %d records, want the %d read (info %+v)", p, len(replayed), len(want), info)
		}
	}
	// Replay covers the partitions of this replica, all of them here; it
	// re-reads them whole, whatever was read before.
	var all int
	if _, err := q.Replay(t.Context(), time.Hour, func(b ingest.Batch, _ ingest.ReplayInfo) error { all += len(b.Records); return nil }); err != nil {
		t.Fatal(err)
	}
	if all != len(in) {
		t.Errorf("replay after the partition replays handed %d records, want all %d", all, len(in))
	}
	// From a position: what follows it, and nothing past the floor.
	for p, want := range got {
		var pos []uint64
		if _, err := q.ReplayPartition(t.Context(), p, partition.From{Span: time.Hour}, func(b ingest.Batch, ri ingest.ReplayInfo) error {
			pos = append(pos, ri.Floor)
			return nil
		}); err != nil || len(pos) == 0 {
			t.Fatalf("partition %d: %v", p, err)
		}
		floor := pos[0]
		var after []string
		if _, err := q.ReplayPartition(t.Context(), p, partition.From{After: floor - 1}, func(b ingest.Batch, _ ingest.ReplayInfo) error {
			for _, r := range b.Records {
				after = append(after, string(r.Data))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(after) == 0 || len(after) >= len(want) || after[len(after)-1] != want[len(want)-1] {
			t.Errorf("partition %d after %d: replayed %d records ending %q, want the last message's", p, floor-1, len(after), after)
		}
		if _, err := q.ReplayPartition(t.Context(), p, partition.From{After: floor + 1}, func(ingest.Batch, ingest.ReplayInfo) error {
			t.Error("replay past the floor handed records")
			return nil
		}); !errors.Is(err, partition.ErrAhead) {
			t.Errorf("partition %d after %d, past the floor %d: %v, want ErrAhead", p, floor+1, floor, err)
		}
	}
}

// TestSentSet checks the shared set of sent alerts.
func TestSentSet(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	q := open(t, url, nil)
	defer q.Close(context.Background())
	s, err := q.SentSet(t.Context(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if has, err := s.Has(t.Context(), "fp1"); err != nil || has {
		t.Fatalf("Has before Add = %v, %v", has, err)
	}
	if err := s.Add(t.Context(), "fp1", []byte("rule")); err != nil {
		t.Fatal(err)
	}
	other := open(t, url, func(o *Options) { o.Member = "m1" })
	defer other.Close(context.Background())
	s2, err := other.SentSet(t.Context(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if has, err := s2.Has(t.Context(), "fp1"); err != nil || !has {
		t.Fatalf("Has on another replica = %v, %v", has, err)
	}
}

func TestOwner(t *testing.T) {
	members := []string{"vigil-0", "vigil-1", "vigil-2"}
	count := map[string]int{}
	moved := 0
	for n := range 240 {
		o := Owner(n, members)
		count[o]++
		if o2 := Owner(n, members[:2]); o != "vigil-2" && o2 != o {
			moved++
		}
	}
	for _, m := range members {
		if count[m] < 60 || count[m] > 100 {
			t.Errorf("%s owns %d of 240 partitions, want about 80", m, count[m])
		}
	}
	if moved != 0 {
		t.Errorf("%d partitions of the members that stayed moved when one left", moved)
	}
	if Owner(3, nil) != "" {
		t.Error("a partition has an owner among no members")
	}
}

// TestQueue_TrimsProcessedHistory fills the stream near its MaxBytes:
// processed history is purged to make room, what is not processed yet
// never is.
func TestQueue_TrimsProcessedHistory(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	q := open(t, url, func(o *Options) { o.MaxBytes, o.MaxPayload = 512<<10, 64<<10 })
	defer q.Close(context.Background())
	rng := rand.New(rand.NewPCG(1, 2))
	publish := func(from, n int) {
		var in []ingest.Entry
		for i := from; i < from+n; i++ {
			e := event(fmt.Sprint("user-", i%8), i)
			// Incompressible, so that the stream fills as counted.
			noise := make([]byte, 400)
			for j := range noise {
				noise[j] = "0123456789abcdef"[rng.IntN(16)]
			}
			e.Data = fmt.Appendf(e.Data[:len(e.Data)-1], `,"noise":%q}`, noise)
			in = append(in, e)
		}
		for lo := 0; lo < len(in); lo += 50 {
			if err := q.Publish(t.Context(), in[lo:min(lo+50, len(in))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	stream := func() jetstream.StreamState {
		si, err := q.events.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return si.State
	}
	publish(0, 1000)
	if n, err := q.trim(t.Context()); err != nil || n != 0 {
		t.Fatalf("trim of unprocessed events purged %d: %v", n, err)
	}
	readAll(t, q, 1000)
	before := stream()
	n, err := q.trim(t.Context())
	if err != nil || n == 0 {
		t.Fatalf("trim of a stream at %d of %d bytes, all processed: %d purged, %v", before.Bytes, 512<<10, n, err)
	}
	if after := stream(); float64(after.Bytes) > jstrim.Low*float64(512<<10)*1.05 {
		t.Errorf("stream at %d bytes after the trim, want about %.0f", after.Bytes, jstrim.Low*float64(512<<10))
	}
	// Unprocessed events are kept whatever the fill.
	publish(1000, 300)
	q.trim(t.Context())
	got, _ := readAll(t, q, 300)
	total := 0
	for _, recs := range got {
		total += len(recs)
	}
	if total != 300 {
		t.Errorf("read %d events after a trim, want the 300 unprocessed", total)
	}
}

// TestSnapshots saves window state larger than a message and reads back
// the last save of each partition, from another replica too.
func TestSnapshots(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	q := open(t, url, nil)
	defer q.Close(context.Background())
	s, err := q.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(t.Context(), 1); err != nil || got != nil {
		t.Fatalf("Load before any save = %d bytes, %v", len(got), err)
	}
	big := make([]byte, 3<<20) // over the server's 1 MiB max_payload
	for i := range big {
		big[i] = byte(i * 7)
	}
	for _, save := range []struct {
		p    int
		data []byte
	}{{1, big}, {2, []byte("two")}, {1, big[:100<<10]}} {
		if err := s.Save(t.Context(), save.p, save.data); err != nil {
			t.Fatal(err)
		}
	}
	other := open(t, url, func(o *Options) { o.Member = "m1" })
	defer other.Close(context.Background())
	s2, err := other.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[int][]byte{1: big[:100<<10], 2: []byte("two"), 3: nil} {
		got, err := s2.Load(t.Context(), p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("partition %d: loaded %d bytes (%v), want the last save, %d bytes", p, len(got), err, len(want))
		}
	}
}
