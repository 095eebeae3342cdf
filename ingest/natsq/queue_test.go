package natsq

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/partition"
	"github.com/vigil-k8s/vigil/ingest/queuetest"
)

// runServer starts a NATS server with JetStream on a loopback port; it
// stops at the end of the test.
func runServer(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

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
	url := runServer(t).ClientURL()
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
	url := runServer(t).ClientURL()
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
	url := runServer(t).ClientURL()
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
	url := runServer(t).ClientURL()
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
		info, err := q.ReplayPartition(t.Context(), p, time.Hour, func(b ingest.Batch, _ ingest.ReplayInfo) error {
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
	// Replay covers the partitions of this replica: all of them here.
	var all int
	if _, err := q.Replay(t.Context(), time.Hour, func(b ingest.Batch, _ ingest.ReplayInfo) error { all += len(b.Records); return nil }); err != nil {
		t.Fatal(err)
	}
	if all != 0 {
		// The partition replays above remembered every key.
		t.Errorf("replay after the partition replays handed %d records again, want the duplicates dropped", all)
	}
}

// TestSentSet checks the shared set of sent alerts.
func TestSentSet(t *testing.T) {
	url := runServer(t).ClientURL()
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
