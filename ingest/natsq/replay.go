package natsq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/frames"
	"github.com/vigil-k8s/vigil/ingest/partition"
)

// Replay implements the pipeline's Rereader for the partitions this
// replica reads or, before its first read, is to read: it re-reads the
// acknowledged events of the span before each partition's ack floor, in
// stream order across those partitions (which is the order they were
// published in), and hands them to fn as batches without an Ack. Records
// are valid only during fn.
func (q *Queue) Replay(ctx context.Context, span time.Duration, fn func(ingest.Batch, ingest.ReplayInfo) error) (ingest.ReplayInfo, error) {
	return q.replay(ctx, q.own.assignedList(), partition.From{Span: span}, fn)
}

// ReplayPartition is Replay for partition p alone, for a replica that has
// just gained it, from a position or a span before the ack floor.
func (q *Queue) ReplayPartition(ctx context.Context, p int, from partition.From, fn func(ingest.Batch, ingest.ReplayInfo) error) (ingest.ReplayInfo, error) {
	if p < 0 || p >= len(q.parts) {
		return ingest.ReplayInfo{}, fmt.Errorf("replay: no partition %d of %d", p, len(q.parts))
	}
	return q.replay(ctx, []int{p}, from, fn)
}

// window is what one partition re-reads: messages after after, up to its
// ack floor, written at or after start.
type window struct {
	after, floor uint64
	start        time.Time
}

func (q *Queue) replay(ctx context.Context, parts []int, from partition.From, fn func(ingest.Batch, ingest.ReplayInfo) error) (ingest.ReplayInfo, error) {
	var info ingest.ReplayInfo
	if (from.Span <= 0 && from.After == 0) || len(parts) == 0 {
		return info, nil
	}
	wins := map[int]window{}
	var subjects []string
	var since time.Time
	for _, n := range parts {
		ci, err := q.parts[n].cons.Info(ctx)
		if err != nil {
			return info, fmt.Errorf("read consumer %s%d: %w", consumerPrefix, n, err)
		}
		w := window{after: from.After, floor: ci.AckFloor.Stream}
		if w.after > w.floor {
			return info, fmt.Errorf("replay partition %d after %d: floor %d: %w", n, w.after, w.floor, partition.ErrAhead)
		}
		if w.floor == w.after {
			continue // nothing acknowledged, or nothing after the position
		}
		if w.after == 0 {
			raw, err := q.events.GetMsg(ctx, w.floor)
			switch {
			case err == nil:
				w.start = raw.Time.Add(-from.Span)
				info.End = later(info.End, raw.Time)
			case errors.Is(err, jetstream.ErrMsgNotFound):
				// The floor message aged out: all that is left up to the
				// floor is re-read.
			default:
				return info, fmt.Errorf("read message %d of %s: %w", w.floor, EventStream, err)
			}
		}
		if len(subjects) == 0 || w.start.Before(since) {
			since = w.start
		}
		wins[n] = w
		info.Floor = max(info.Floor, w.floor)
		subjects = append(subjects, partitionSubject(n))
	}
	if len(wins) == 0 {
		return info, nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case from.After > 0:
		start := from.After + 1
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	case !since.IsZero():
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	oc, err := q.events.OrderedConsumer(ctx, cfg)
	if err != nil {
		return info, fmt.Errorf("create replay consumer: %w", err)
	}
	var fs []frames.Frame
	seen := ingest.NewDedup[ingest.Digest](q.opts.DedupMaxKeys, 0)
	for {
		mb, err := oc.Fetch(256, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return info, fmt.Errorf("replay %s: %w", EventStream, err)
		}
		got := 0
		for m := range mb.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return info, fmt.Errorf("replay %s: %w", EventStream, err)
			}
			seq := md.Sequence.Stream
			if seq > info.Floor {
				return info, nil
			}
			w, ok := wins[subjectPartition(m.Subject())]
			if !ok || seq <= w.after || seq > w.floor || md.Timestamp.Before(w.start) {
				continue
			}
			if info.Messages == 0 {
				info.Start, info.FromStart = md.Timestamp, seq == 1
			}
			info.Messages++
			if fs, err = q.replayMessage(m, fs, seen, &info, fn); err != nil {
				return info, err
			}
			if seq == info.Floor {
				return info, nil
			}
		}
		if err := mb.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return info, fmt.Errorf("replay %s: %w", EventStream, err)
		}
		if got == 0 {
			// Nothing more before the floors (messages aged out meanwhile).
			return info, nil
		}
	}
}

// replayMessage hands the records of m that are not duplicates within
// this replay to fn. It does not consult what this replica read before (a
// replica that had the partition once re-reads it whole), but remembers
// the keys, so that a redelivery after the floor is dropped.
func (q *Queue) replayMessage(m jetstream.Msg, fs []frames.Frame, seen *ingest.Dedup[ingest.Digest], info *ingest.ReplayInfo, fn func(ingest.Batch, ingest.ReplayInfo) error) ([]frames.Frame, error) {
	h := m.Headers()
	cluster := h.Get(HeaderCluster)
	data, buf, err := q.bufs.Body(m.Data(), h.Get(HeaderEncoding), q.maxPayload)
	defer q.bufs.Put(buf) // the records were valid during fn only
	if err != nil {
		q.m.Corrupt.Inc()
		q.log.Error("read queue message", "err", err, "subject", m.Subject())
		return fs, nil
	}
	fs, err = frames.Decode(data, fs[:0])
	if err != nil {
		q.m.Corrupt.Inc()
		q.log.Error("decode queue message", "err", err, "subject", m.Subject())
	}
	recs := make([]ingest.Record, 0, len(fs))
	now := q.opts.Now()
	for _, f := range fs {
		// What a replay reads is marked delivered: it does not come
		// again live.
		if k, _ := q.dedup.Seen(f.Key, now); !seen.Seen(k) {
			recs = append(recs, ingest.Record{Data: f.Data, Cluster: cluster})
		}
	}
	info.Records += len(recs)
	if len(recs) == 0 {
		return fs, nil
	}
	return fs, fn(ingest.Batch{Records: recs}, *info)
}

// subjectPartition reads n from a stored subject vigil.events.p.<n>.<token>;
// -1 for any other subject.
func subjectPartition(subj string) int {
	rest, ok := strings.CutPrefix(subj, subjectStored)
	if !ok {
		return -1
	}
	num, _, _ := strings.Cut(rest, ".")
	n, err := strconv.Atoi(num)
	if err != nil {
		return -1
	}
	return n
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
