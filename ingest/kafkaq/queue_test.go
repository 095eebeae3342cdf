package kafkaq

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/partition"
	"github.com/vigil-k8s/vigil/ingest/queuetest"
)

// runKafka starts an in-process Kafka with one broker.
func runKafka(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

var topics atomic.Int64

// open opens a queue on a topic and group of its own unless mod names them.
func open(t *testing.T, brokers []string, mod func(*Options)) *Queue {
	t.Helper()
	n := topics.Add(1)
	o := Options{Brokers: brokers, Topic: fmt.Sprint("events-", n), Group: fmt.Sprint("detect-", n),
		Partitions: 4, Replication: 1, SessionTimeout: 6 * time.Second}
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	q, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestQueue_Contract runs the queue contract against the queue on one
// broker, a topic and group for each subtest.
func TestQueue_Contract(t *testing.T) {
	brokers := runKafka(t)
	queuetest.Run(t, func(t *testing.T, l queuetest.Limits) queuetest.Harness {
		var topic, group string
		mod := func(o *Options) {
			o.MaxPendingBytes = int64(l.MaxPending) * queuetest.EntrySize
			if topic != "" {
				o.Topic, o.Group = topic, group
			}
		}
		q := open(t, brokers, mod)
		topic, group = q.opts.Topic, q.opts.Group
		return queuetest.Harness{
			Queue:        q,
			Reopen:       func(t *testing.T) ingest.Queue { return open(t, brokers, mod) },
			OrderedByKey: true,
		}
	})
}

func event(user string, i int) ingest.Entry {
	id := fmt.Sprintf("%s-%06d", user, i)
	data := fmt.Sprintf(`{"auditID":%q,"stage":"ResponseComplete","user":{"username":%q}}`, id, user)
	return ingest.Entry{Record: ingest.Record{Data: []byte(data), Cluster: "c"}, Key: ingest.DedupKey(id, "ResponseComplete")}
}

// TestQueue_PartitionByKey checks that one user's events come from one
// partition, in order, and that the partitions are announced as gained
// before their records.
func TestQueue_PartitionByKey(t *testing.T) {
	q := open(t, runKafka(t), func(o *Options) { o.Partitions = 6 })
	defer q.Close(context.Background())
	var in []ingest.Entry
	for i := range 20 {
		for u := range 12 {
			in = append(in, event(fmt.Sprint("user-", u), i))
		}
	}
	if err := q.Publish(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	gained := map[int]bool{}
	userPart := map[string]int{}
	last := map[string]string{}
	for n := 0; n < len(in); {
		b, err := q.ReadPartition(ctx)
		if err != nil {
			t.Fatalf("after %d records: %v", n, err)
		}
		if b.Change != partition.Records {
			if b.Change != partition.Gained || gained[b.Partition] {
				t.Fatalf("unexpected %v of partition %d", b.Change, b.Partition)
			}
			gained[b.Partition] = true
			continue
		}
		if !gained[b.Partition] {
			t.Fatalf("records of partition %d before its gain", b.Partition)
		}
		for _, r := range b.Records {
			s := string(r.Data)
			user := s[strings.Index(s, `"username":"`)+12 : strings.LastIndex(s, `"`)]
			if p, ok := userPart[user]; ok && p != b.Partition {
				t.Fatalf("%s in partitions %d and %d", user, p, b.Partition)
			}
			userPart[user] = b.Partition
			if s < last[user] {
				t.Fatalf("%s out of order", user)
			}
			last[user] = s
		}
		n += len(b.Records)
		if err := b.Ack(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(gained) != 6 || len(q.Owned()) != 6 {
		t.Errorf("gained %d and owns %v of 6 partitions as the only member", len(gained), q.Owned())
	}
	if ok, err := q.Drained(ctx); err != nil || !ok {
		t.Errorf("Drained after acknowledging everything = %v, %v", ok, err)
	}
}

// TestQueue_Replay checks that a restart re-reads the committed events,
// merged across partitions in the order written.
func TestQueue_Replay(t *testing.T) {
	brokers := runKafka(t)
	q := open(t, brokers, nil)
	topic, group := q.opts.Topic, q.opts.Group
	var in []ingest.Entry
	for i := range 10 {
		for u := range 5 {
			e := event(fmt.Sprint("user-", u), i)
			in = append(in, e)
			if err := q.Publish(t.Context(), []ingest.Entry{e}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for n := 0; n < len(in); {
		b, err := q.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(b.Records)
		if err := b.Ack(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	q.Close(t.Context())
	q = open(t, brokers, func(o *Options) { o.Topic, o.Group = topic, group })
	defer q.Close(context.Background())
	var got []string
	info, err := q.Replay(ctx, time.Hour, func(b ingest.Batch, _ ingest.ReplayInfo) error {
		for _, r := range b.Records {
			got = append(got, string(r.Data))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) || !info.FromStart {
		t.Fatalf("replayed %d records (info %+v), want all %d from the start", len(got), info, len(in))
	}
	for i := range in {
		if got[i] != string(in[i].Data) {
			t.Fatalf("record %d replayed is %.50s, want %.50s", i, got[i], in[i].Data)
		}
	}
}

// TestSnapshots saves window state larger than a message, in chunks, and
// reads back the last save of each partition, from another replica too.
func TestSnapshots(t *testing.T) {
	brokers := runKafka(t)
	q := open(t, brokers, func(o *Options) { o.BatchBytes = 64 << 10 })
	defer q.Close(context.Background())
	s, err := q.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(t.Context(), 1); err != nil || got != nil {
		t.Fatalf("Load before any save = %d bytes, %v", len(got), err)
	}
	big := make([]byte, 300<<10)
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
	other := open(t, brokers, func(o *Options) { o.Topic, o.Group, o.BatchBytes = q.opts.Topic, q.opts.Group, 64<<10 })
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

// TestSentSet checks the shared set of sent alerts across two replicas.
func TestSentSet(t *testing.T) {
	brokers := runKafka(t)
	a := open(t, brokers, nil)
	defer a.Close(context.Background())
	b := open(t, brokers, func(o *Options) { o.Topic, o.Group = a.opts.Topic, a.opts.Group })
	defer b.Close(context.Background())
	sa, err := a.SentSet(t.Context(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.SentSet(t.Context(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if has, err := sb.Has(t.Context(), "fp1"); err != nil || has {
		t.Fatalf("Has before Add = %v, %v", has, err)
	}
	if err := sa.Add(t.Context(), "fp1", []byte("rule")); err != nil {
		t.Fatal(err)
	}
	if has, _ := sa.Has(t.Context(), "fp1"); !has {
		t.Error("the replica that added fp1 does not have it")
	}
	if err := sb.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if has, err := sb.Has(t.Context(), "fp1"); err != nil || !has {
		t.Fatalf("Has on the other replica after Sync = %v, %v", has, err)
	}
	// A replica that starts later reads what was recorded.
	c := open(t, brokers, func(o *Options) { o.Topic, o.Group = a.opts.Topic, a.opts.Group })
	defer c.Close(context.Background())
	sc, err := c.SentSet(t.Context(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if has, _ := sc.Has(t.Context(), "fp1"); !has {
		t.Error("a replica started later does not have fp1")
	}
}
