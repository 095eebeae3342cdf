package kafkaq

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/vigil-k8s/vigil/ingest"
)

// replayBatch is how many records Replay hands fn at a time.
const replayBatch = 256

// Replay implements the pipeline's Rereader for this replica's
// partitions: it re-reads the committed events of the span before each
// partition's committed offset, merged across the partitions by write
// time (the order they were published in), and hands them to fn as
// batches without an Ack. ReplayInfo.Floor is the highest last committed
// offset.
func (q *Queue) Replay(ctx context.Context, span time.Duration, fn func(ingest.Batch, ingest.ReplayInfo) error) (ingest.ReplayInfo, error) {
	return q.replay(ctx, q.Owned(), span, fn)
}

// ReplayPartition is Replay for partition p alone, for a replica that has
// just gained it.
func (q *Queue) ReplayPartition(ctx context.Context, p int, span time.Duration, fn func(ingest.Batch, ingest.ReplayInfo) error) (ingest.ReplayInfo, error) {
	if p < 0 || p >= q.opts.Partitions {
		return ingest.ReplayInfo{}, fmt.Errorf("replay: no partition %d of %d", p, q.opts.Partitions)
	}
	return q.replay(ctx, []int{p}, span, fn)
}

// stream is one partition being re-read up to end, with its next message.
type stream struct {
	r    *kafka.Reader
	end  int64
	head kafka.Message
}

func (q *Queue) replay(ctx context.Context, parts []int, span time.Duration, fn func(ingest.Batch, ingest.ReplayInfo) error) (info ingest.ReplayInfo, err error) {
	if span <= 0 || len(parts) == 0 {
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
		c, ok := committed[p]
		if !ok || c <= 0 {
			continue
		}
		s, fromStart, err := q.openStream(ctx, p, c-1, span, &info)
		if err != nil {
			return info, err
		}
		if s != nil {
			streams = append(streams, s)
			info.FromStart = info.FromStart && fromStart
		}
		info.Floor = max(info.Floor, uint64(c-1))
	}
	if len(streams) == 0 {
		info.FromStart = false
		return info, nil
	}
	var recs []ingest.Record
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
		if rec, ok := q.replayRecord(m); ok {
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

// openStream positions a reader of partition p at the first message
// written within span before the message at floor, and reads it.
func (q *Queue) openStream(ctx context.Context, p int, floor int64, span time.Duration, info *ingest.ReplayInfo) (*stream, bool, error) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: q.opts.Brokers, Topic: q.opts.Topic, Partition: p,
		Dialer: q.dialer, MinBytes: 1, MaxBytes: q.opts.BatchBytes, MaxWait: 250 * time.Millisecond})
	fail := func(err error) (*stream, bool, error) {
		r.Close()
		return nil, false, fmt.Errorf("replay %s/%d: %w", q.opts.Topic, p, err)
	}
	if err := r.SetOffset(floor); err != nil {
		return fail(err)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	last, err := r.FetchMessage(fctx)
	if err != nil {
		return fail(fmt.Errorf("read the last committed message at %d: %w", floor, err))
	}
	if last.Offset != floor {
		// The floor message aged out: what is left up to it is re-read.
		q.log.Info("replay: last committed message gone", "partition", p, "offset", floor)
	}
	info.End = later(info.End, last.Time)
	if err := r.SetOffsetAt(ctx, last.Time.Add(-span)); err != nil {
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

// replayRecord is m as a record, unless it is a duplicate; its key is
// remembered so that what is read again after the floor is dropped.
func (q *Queue) replayRecord(m kafka.Message) (ingest.Record, bool) {
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
	q.dedupMu.Lock()
	defer q.dedupMu.Unlock()
	q.dedup.Advance(q.opts.Now())
	if q.dedup.Seen(q.digests.Digest(key)) {
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
