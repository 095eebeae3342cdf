package jetstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/frames"
	"github.com/vigil-k8s/vigil/ingest/internal/jspub"
)

// Publish implements ingest.Queue. Entries are split into messages of at
// most MaxPayload bytes, each holding entries of one cluster, published
// asynchronously and awaited together.
func (q *Queue) Publish(ctx context.Context, entries []ingest.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if !q.publishes.Enter() {
		return fmt.Errorf("publish: %w", ingest.ErrClosed)
	}
	defer q.publishes.Leave()
	var size int64
	for _, e := range entries {
		if len(e.Data) > q.MaxRecordSize() {
			return fmt.Errorf("publish: record of %d bytes is over the limit of %d", len(e.Data), q.MaxRecordSize())
		}
		size += int64(len(e.Data) + len(e.Key) + 2*binary.MaxVarintLen32)
	}
	if r := q.reserved.Add(size); r+q.stored.Load() > q.opts.MaxPendingBytes {
		q.reserved.Add(-size)
		q.m.Full.Inc()
		return fmt.Errorf("publish %d bytes with %d pending of %d: %w", size, r-size+q.stored.Load(), q.opts.MaxPendingBytes, ingest.ErrFull)
	}
	defer q.reserved.Add(-size)

	msgs, info := q.split(entries)
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	gauges := make([]*clusterGauges, len(msgs))
	for i, m := range msgs {
		// Counted before the message can reach Read, which uncounts it.
		gauges[i] = q.m.cluster(info[i].cluster)
		gauges[i].queued.Add(int64(info[i].events))
		f, err := jspub.Async(ctx, q.pubJS, m, q.m.stalls.Inc, q.publishes.IsShut)
		if err != nil {
			gauges[i].queued.Add(-int64(info[i].events))
			return err
		}
		futures = append(futures, f)
	}
	var errs []error
	for i, f := range futures {
		select {
		case <-f.Ok():
			q.stored.Add(int64(info[i].raw))
		case err := <-f.Err():
			gauges[i].queued.Add(-int64(info[i].events))
			errs = append(errs, jspub.Classify(err))
		case <-ctx.Done():
			// The client may still resend these messages: their
			// buffers are not reused.
			return fmt.Errorf("publish: wait for queue acknowledgement: %w", ctx.Err())
		}
	}
	q.putBufs(msgs)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	q.m.Published.Add(len(entries))
	q.m.PublishedMsgs.Add(len(msgs))
	return nil
}

// split frames entries into messages no larger than the payload limit,
// starting a new message whenever the cluster changes, and compresses each.
// It returns the messages and, for each, its events and the size of its
// frames before compression.
//
// Messages take about frames.Target of frames: audit JSON compresses about 8×
// with S2, so a message stays under the 64 KiB that the server and the
// client read from a connection at a time (a larger one is gathered into a
// growing buffer on both sides, copied again each time). Compression also
// cuts what the store writes, caches and keeps on disk. A single entry
// larger than that still goes alone, up to the payload limit.
func (q *Queue) split(entries []ingest.Entry) ([]*nats.Msg, []msgInfo) {
	limit := min(q.opts.MaxPayload-frameSlack, frames.Target)
	scratch := q.getBuf(0)
	defer q.putBuf(scratch)
	var msgs []*nats.Msg
	var info []msgInfo
	for i := 0; i < len(entries); {
		cluster := entries[i].Cluster
		b := (*scratch)[:0]
		j := i
		for ; j < len(entries) && entries[j].Cluster == cluster; j++ {
			if j > i && len(b)+frames.Size(entries[j]) > limit {
				break
			}
			b = frames.Append(b, entries[j])
		}
		*scratch = b
		m := nats.NewMsg(EventSubject)
		if cluster != "" {
			m.Header.Set(HeaderCluster, cluster)
		}
		m.Data = q.compress(m, b)
		msgs = append(msgs, m)
		info = append(info, msgInfo{raw: len(b), events: j - i, cluster: cluster})
		i = j
	}
	return msgs, info
}

// msgInfo describes a message split made: the size of its frames before
// compression, its events and their cluster.
type msgInfo struct {
	raw, events int
	cluster     string
}

// compress returns the body of a message of frames b, in a pool buffer:
