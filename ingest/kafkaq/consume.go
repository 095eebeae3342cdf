package kafkaq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/partition"
)

// item is what Read gets: a batch of one partition, or an ownership
// change (d nil).
type item struct {
	part   int
	change partition.Change
	d      *delivery
}

// delivery is one batch of one partition: the offsets it spans and its
// records that are not duplicates.
type delivery struct {
	part        int
	first, last int64
	recs        []ingest.Record
	keys        []ingest.Digest
	// acked tells the partition's reader how the batch ended: nil, or the
	// error that has it read again.
	acked chan error
	done  atomic.Bool
}

// follow runs the group: each generation it announces the partitions lost
// and gained (after the old generation's readers stopped, before the new
// ones start) and starts a reader per partition of this replica.
func (q *Queue) follow() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-q.done
		cancel()
	}()
	var prev []int
	for {
		gen, err := q.group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return
			}
			q.log.Warn("kafka consumer group", "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
			continue
		}
		assigns := gen.Assignments[q.opts.Topic]
		var now []int
		for _, a := range assigns {
			now = append(now, a.ID)
		}
		slices.Sort(now)
		q.genMu.Lock()
		q.gen, q.owned = gen, now
		q.genMu.Unlock()
		q.firstOnce.Do(func() { close(q.first) })
		for _, p := range prev {
			if !slices.Contains(now, p) {
				q.genMu.Lock()
				delete(q.high, p)
				q.genMu.Unlock()
				q.m.Lost.Inc()
				q.m.Partition(p).Pending.Store(0)
				q.log.Info("partition lost", "partition", p, "generation", gen.ID)
				q.push(ctx, item{part: p, change: partition.Lost})
			}
		}
		for _, p := range now {
			if !slices.Contains(prev, p) {
				q.m.Gained.Inc()
				q.log.Info("partition gained", "partition", p, "generation", gen.ID)
				q.push(ctx, item{part: p, change: partition.Gained})
			}
		}
		q.m.Owned.Set(float64(len(now)))
		prev = now
		for _, a := range assigns {
			gen.Start(func(ctx context.Context) { q.readPartition(ctx, gen, a) })
		}
	}
}

// push hands an item to Read; false when ctx ended first.
func (q *Queue) push(ctx context.Context, it item) bool {
	select {
	case q.items <- it:
		return true
	case <-ctx.Done():
		return false
	}
}

// readPartition reads one partition for one generation, one batch at a
// time: the next batch is read once the last was acknowledged, from where
// it ended, or from where it began when it failed.
func (q *Queue) readPartition(ctx context.Context, gen *kafka.Generation, a kafka.PartitionAssignment) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: q.opts.Brokers, Topic: q.opts.Topic, Partition: a.ID, Dialer: q.dialer,
		MinBytes: 1, MaxBytes: q.opts.BatchBytes, MaxWait: 250 * time.Millisecond,
		ReadBackoffMin: 50 * time.Millisecond, ReadBackoffMax: time.Second,
		ErrorLogger: kafka.LoggerFunc(func(f string, args ...any) {
			q.log.Warn(fmt.Sprintf(f, args...), "component", "kafka reader", "partition", a.ID)
		}),
	})
	defer r.Close()
	off := a.Offset
	if off < 0 {
		off = kafka.FirstOffset
	}
	if err := r.SetOffset(off); err != nil {
		q.log.Error("read partition", "partition", a.ID, "err", err)
		<-ctx.Done()
		return
	}
	for {
		d, err := q.fetch(ctx, r, a.ID)
		if err != nil {
			if ctx.Err() == nil {
				q.log.Warn("read partition", "partition", a.ID, "err", err)
			}
			return
		}
		if len(d.recs) == 0 {
			// All duplicates: nothing for detection, and done with.
			if _, err := q.commit(gen, d); err != nil {
				q.log.Warn("commit duplicates", "partition", a.ID, "err", err)
			}
			continue
		}
		if !q.push(ctx, item{part: a.ID, d: d}) {
			q.forget(d)
			return
		}
		select {
		case err := <-d.acked:
			if err != nil {
				if err := r.SetOffset(d.first); err != nil {
					q.log.Error("read partition again", "partition", a.ID, "err", err)
					return
				}
			}
		case <-ctx.Done():
			// The batch's ack still commits, through the generation that
			// holds the partition then.
			return
		}
	}
}

// fetch waits for one message and takes what else the reader has at once,
// up to MaxBatch records.
func (q *Queue) fetch(ctx context.Context, r *kafka.Reader, p int) (*delivery, error) {
	m, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	d := &delivery{part: p, first: m.Offset, acked: make(chan error, 1)}
	q.take(d, m)
	more, cancel := context.WithTimeout(ctx, 2*time.Millisecond)
	defer cancel()
	for len(d.recs) < q.opts.MaxBatch {
		m, err := r.FetchMessage(more)
		if err != nil {
			break
		}
		q.take(d, m)
	}
	return d, nil
}

func (q *Queue) take(d *delivery, m kafka.Message) {
	d.last = m.Offset
	var cluster string
	var key []byte
	for _, h := range m.Headers {
		switch h.Key {
		case HeaderCluster:
			cluster = string(h.Value)
		case HeaderKey:
			key = h.Value
		}
	}
	q.m.Partition(d.part).Take(m.Time)
	q.pending.NoteMessage(len(m.Value))
	dk, ok := q.dedup.Admit(key, cluster, q.opts.Now())
	if !ok {
		return
	}
	d.recs = append(d.recs, ingest.Record{Data: m.Value, Cluster: cluster,
		Origin: "queue:" + strconv.Itoa(d.part) + "/" + strconv.FormatInt(m.Offset, 10)})
	d.keys = append(d.keys, dk)
	q.m.Read.Inc()
}

// Read implements ingest.Source: ReadPartition without the partition and
// without the announcements.
func (q *Queue) Read(ctx context.Context) (ingest.Batch, error) {
	for {
		b, err := q.ReadPartition(ctx)
		if err != nil || b.Change == partition.Records {
			return b.Batch, err
		}
	}
}

// ReadPartition returns the next batch of one partition, up to MaxBatch
// records, or an ownership change. Messages of a partition come in offset
// order, so the events of one key come in the order published (reads
// again aside). Duplicates (by key, within the de-duplication window) are
// left out. A record's Origin is "queue:PARTITION/OFFSET".
func (q *Queue) ReadPartition(ctx context.Context) (partition.Batch, error) {
	select {
	case it := <-q.items:
		if it.d == nil {
			return partition.Batch{Partition: it.part, Change: it.change}, nil
		}
		return partition.Batch{Batch: ingest.Batch{Records: it.d.recs, Ack: q.ackFunc(it.d)}, Partition: it.part,
			Pos: uint64(it.d.last) + 1}, nil
	case <-ctx.Done():
		return partition.Batch{}, ctx.Err()
	case <-q.done:
		return partition.Batch{}, fmt.Errorf("read: %w", ingest.ErrClosed)
	}
}

// ackFunc commits the batch's offsets, or has it read again. A batch
// processed while its partition moves cannot be committed: its Ack says
// so with partition.ErrUncommitted.
func (q *Queue) ackFunc(d *delivery) ingest.AckFunc {
	return func(ctx context.Context, err error) error {
		if d.done.Swap(true) {
			return errors.New("ack: batch already acknowledged")
		}
		if err != nil {
			q.forget(d)
			d.acked <- err
			return nil
		}
		select {
		case <-q.done:
			return fmt.Errorf("ack: %w", ingest.ErrClosed)
		default:
		}
		q.genMu.Lock()
		gen := q.gen
		q.genMu.Unlock()
		done, cerr := q.commit(gen, d)
		d.acked <- nil
		if cerr == nil && !done {
			cerr = fmt.Errorf("commit %s/%d at %d: %w", q.opts.Topic, d.part, d.last+1, partition.ErrUncommitted)
		}
		return cerr
	}
}

// commit records the end of d as the partition's committed offset, through
// gen, if this replica still holds the partition, and reports whether the
// offset is committed. When the partition has moved, its next owner reads
// the batch again, which de-duplication and the shared record of sent
// alerts absorb.
func (q *Queue) commit(gen *kafka.Generation, d *delivery) (bool, error) {
	q.genMu.Lock()
	held := slices.Contains(q.owned, d.part)
	stale := q.high[d.part] >= d.last+1
	q.genMu.Unlock()
	if stale {
		return true, nil
	}
	if gen == nil || !held {
		return false, nil
	}
	err := gen.CommitOffsets(map[string]map[int]int64{q.opts.Topic: {d.part: d.last + 1}})
	switch {
	case err == nil:
		q.genMu.Lock()
		q.high[d.part] = max(q.high[d.part], d.last+1)
		q.genMu.Unlock()
		return true, nil
	case errors.Is(err, kafka.RebalanceInProgress), errors.Is(err, kafka.IllegalGeneration),
		errors.Is(err, kafka.UnknownMemberId), errors.Is(err, kafka.NotCoordinatorForGroup):
		q.log.Debug("batch not committed: the group is rebalancing", "partition", d.part, "err", err)
		return false, nil
	default:
		return false, fmt.Errorf("commit %s/%d at %d: %w", q.opts.Topic, d.part, d.last+1, err)
	}
}

// forget lets the records of a batch that was not processed through again.
func (q *Queue) forget(d *delivery) {
	q.dedup.Forget(d.keys)
}
