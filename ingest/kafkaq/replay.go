package kafkaq

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/partition"
)

// replayBatch is how many records Replay hands fn at a time.
const replayBatch = 256

// Replay implements the pipeline's Rereader for this replica's
// partitions: it re-reads the committed events of the span before each
// partition's committed offset, merged across the partitions by write
// time (the order they were published in), and hands them to fn as
// batches without an Ack. ReplayInfo.Floor is the highest committed
// offset, the position (offset plus one) of the last message committed.
func (q *Queue) Replay(ctx context.Context, span time.Duration, fn func(ingest.Batch, ingest.ReplayInfo) error) (ingest.ReplayInfo, error) {
	return q.replay(ctx, q.Owned(), partition.From{Span: span}, fn)
}

// ReplayPartition is Replay for partition p alone, for a replica that has
// just gained it, from a position (an offset plus one) or a span before
// the committed offset.
func (q *Queue) ReplayPartition(ctx context.Context, p int, from partition.From, fn func(ingest.Batch, ingest.ReplayInfo) error) (ingest.ReplayInfo, error) {
	if p < 0 || p >= q.opts.Partitions {
		return ingest.ReplayInfo{}, fmt.Errorf("replay: no partition %d of %d", p, q.opts.Partitions)
	}
	return q.replay(ctx, []int{p}, from, fn)
}

// stream is one partition being re-read up to end, with its next message.
type stream struct {
	r    *kafka.Reader
	end  int64
	head kafka.Message
}

func (q *Queue) replay(ctx context.Context, parts []int, from partition.From, fn func(ingest.Batch, ingest.ReplayInfo) error) (info ingest.ReplayInfo, err error) {
	if (from.Span <= 0 && from.After == 0) || len(parts) == 0 {
		return info, nil
	}
	committed, err := q.committed(ctx, parts)
	if err != nil {
		return info, err
	}
	var streams []*stream
	defer func() {
		for _, s := range streams {
			s.r.Close()
		}
	}()
	info.FromStart = true
	for _, p := range parts {
		c := committed[p] // the next offset to read: the position of the last committed
		if from.After > uint64(max(c, 0)) {
			return info, fmt.Errorf("replay %s/%d after %d: committed %d: %w", q.opts.Topic, p, from.After, c, partition.ErrAhead)
		}
		if c <= 0 || uint64(c) == from.After {
			continue
		}
		s, fromStart, err := q.openStream(ctx, p, c-1, from, &info)
		if err != nil {
			return info, err
		}
		if s != nil {
			streams = append(streams, s)
			info.FromStart = info.FromStart && fromStart
		}
		info.Floor = max(info.Floor, uint64(c))
	}
	if len(streams) == 0 {
		info.FromStart = false
		return info, nil
	}
	var recs []ingest.Record
	seen := ingest.NewDedup[ingest.Digest](q.opts.DedupMaxKeys, 0)
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		info.Records += len(recs)
		err := fn(ingest.Batch{Records: recs}, info)
		recs = nil
		return err
	}
	for len(streams) > 0 {
		i := 0
		for j, s := range streams {
			if s.head.Time.Before(streams[i].head.Time) {
				i = j
			}
		}
		s := streams[i]
		m := s.head
		if info.Messages == 0 {
			info.Start = m.Time
		}
		info.Messages++
		if rec, ok := q.replayRecord(m, seen); ok {
			recs = append(recs, rec)
			if len(recs) == replayBatch {
				if err := flush(); err != nil {
					return info, err
				}
			}
		}
		if m.Offset >= s.end {
			s.r.Close()
			streams = append(streams[:i], streams[i+1:]...)
			continue
		}
		if s.head, err = s.r.FetchMessage(ctx); err != nil {
			return info, fmt.Errorf("replay %s/%d: %w", q.opts.Topic, m.Partition, err)
		}
	}
	return info, flush()
}

// openStream positions a reader of partition p at the first message after
// from.After, or else at the first written within from.Span before the
// message at floor, and reads it.
func (q *Queue) openStream(ctx context.Context, p int, floor int64, from partition.From, info *ingest.ReplayInfo) (*stream, bool, error) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: q.opts.Brokers, Topic: q.opts.Topic, Partition: p,
		Dialer: q.dialer, MinBytes: 1, MaxBytes: q.opts.BatchBytes, MaxWait: 250 * time.Millisecond})
	fail := func(err error) (*stream, bool, error) {
		r.Close()
		return nil, false, fmt.Errorf("replay %s/%d: %w", q.opts.Topic, p, err)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if from.After > 0 {
		if err := r.SetOffset(int64(from.After)); err != nil {
			return fail(err)
		}
		first, err := r.FetchMessage(fctx)
		if err != nil {
			return fail(fmt.Errorf("read from %d: %w", from.After, err))
		}
		if first.Offset > floor {
			r.Close() // nothing left up to the floor
			return nil, false, nil
		}
		return &stream{r: r, end: floor, head: first}, false, nil
	}
	if err := r.SetOffset(floor); err != nil {
		return fail(err)
	}
	last, err := r.FetchMessage(fctx)
	if err != nil {
		return fail(fmt.Errorf("read the last committed message at %d: %w", floor, err))
	}
	if last.Offset != floor {
		// The floor message aged out: what is left up to it is re-read.
		q.log.Info("replay: last committed message gone", "partition", p, "offset", floor)
	}
	info.End = later(info.End, last.Time)
	if err := r.SetOffsetAt(ctx, last.Time.Add(-from.Span)); err != nil {
		return fail(err)
	}
	first, err := r.FetchMessage(fctx)
	if err != nil {
		return fail(err)
	}
	offs, err := q.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		q.opts.Topic: {kafka.FirstOffsetOf(p)}}})
	if err != nil {
		return fail(err)
	}
	fromStart := false
	for _, po := range offs.Topics[q.opts.Topic] {
		fromStart = po.Error == nil && first.Offset <= po.FirstOffset
	}
	return &stream{r: r, end: floor, head: first}, fromStart, nil
}

// replayRecord is m as a record, unless it is a duplicate within this
// replay. It does not consult what this replica read before (a replica
// that had the partition once re-reads it whole), but remembers the key,
// so that what is read again after the floor is dropped.
func (q *Queue) replayRecord(m kafka.Message, seen *ingest.Dedup[ingest.Digest]) (ingest.Record, bool) {
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
	// What a replay reads is marked delivered: it does not come again
	// live.
	k, _ := q.dedup.Seen(key, q.opts.Now())
	if seen.Seen(k) {
		return ingest.Record{}, false
	}
	return ingest.Record{Data: m.Value, Cluster: cluster}, true
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
