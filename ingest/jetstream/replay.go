package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/frames"
)

// Replay re-reads, in order, the already acknowledged events written in the
// span before the consumer's ack floor, and hands them to fn as batches
// without an Ack. It rebuilds in-memory state (window state, the
// de-duplication window) after a restart; call it after Open and before
// the first Read. Records are valid only during fn, which also receives
// what is known of the re-read so far.
func (q *Queue) Replay(ctx context.Context, span time.Duration, fn func(ingest.Batch, ingest.ReplayInfo) error) (ingest.ReplayInfo, error) {
	info := ingest.ReplayInfo{Floor: q.floor}
	if info.Floor == 0 || span <= 0 {
		return info, nil
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	raw, err := q.events.GetMsg(ctx, info.Floor)
	switch {
	case err == nil:
		info.End = raw.Time
		start := raw.Time.Add(-span)
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start}
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// The floor message aged out: everything left is newer, and all of
		// it up to the floor is re-read.
	default:
		return info, fmt.Errorf("read message %d of %s: %w", info.Floor, EventStream, err)
	}
	oc, err := q.events.OrderedConsumer(ctx, cfg)
	if err != nil {
		return info, fmt.Errorf("create replay consumer: %w", err)
	}
	var fs []frames.Frame
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
			if md.Sequence.Stream > info.Floor {
				return info, nil
			}
			if info.Messages == 0 {
				info.Start = md.Timestamp
				info.FromStart = md.Sequence.Stream == 1
			}
			info.Messages++
			h := m.Headers()
			cluster := h.Get(HeaderCluster)
			data, buf, err := q.body(m.Data(), h)
			if err != nil {
				q.m.Corrupt.Inc()
				q.log.Error("read queue message", "err", err, "seq", md.Sequence.Stream)
			}
			fs, err = frames.Decode(data, fs[:0])
			if err != nil {
				q.m.Corrupt.Inc()
				q.log.Error("decode queue message", "err", err, "seq", md.Sequence.Stream)
			}
			now := q.opts.Now()
			recs := make([]ingest.Record, 0, len(fs))
			for _, f := range fs {
				if _, dup := q.dedup.Seen(f.Key, now); !dup {
					recs = append(recs, ingest.Record{Data: f.Data, Cluster: cluster})
				}
			}
			info.Records += len(recs)
			if len(recs) > 0 {
				if err := fn(ingest.Batch{Records: recs}, info); err != nil {
					return info, err
				}
			}
			q.putBuf(buf) // the records were valid during fn only
			if md.Sequence.Stream == info.Floor {
				return info, nil
			}
		}
		if err := mb.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return info, fmt.Errorf("replay %s: %w", EventStream, err)
		}
		if got == 0 {
			// Nothing more before the floor (messages aged out meanwhile).
			return info, nil
		}
	}
}
