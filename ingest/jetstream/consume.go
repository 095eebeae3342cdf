package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/frames"
)

// deliver runs on the consumer's delivery goroutine; blocking here is the
// back-pressure that keeps delivered-but-unread messages bounded.
func (q *Queue) deliver(m jetstream.Msg) {
	select {
	case q.msgs <- m:
	case <-q.done:
	}
}

// Read implements ingest.Source: it blocks for one message and then takes
// what else is already delivered, up to MaxBatch records. Messages come in
// stream order, so one publisher's entries come in the order published
// (redeliveries aside). Duplicates (by key, within the de-duplication
// window) are left out; a read whose records were all duplicates is
// acknowledged and Read waits for more. A record's Origin is
// "queue:" and its message's stream sequence.
func (q *Queue) Read(ctx context.Context) (ingest.Batch, error) {
	for {
		var first jetstream.Msg
		select {
		case first = <-q.msgs:
		case <-ctx.Done():
			return ingest.Batch{}, ctx.Err()
		case <-q.done:
			return ingest.Batch{}, fmt.Errorf("read: %w", ingest.ErrClosed)
		}
		d := &delivery{}
		q.take(d, first)
	more:
		for len(d.recs) < q.opts.MaxBatch {
			select {
			case m := <-q.msgs:
				q.take(d, m)
			default:
				break more
			}
		}
		b := ingest.Batch{Records: d.recs, Ack: q.ackFunc(d)}
		if len(d.recs) == 0 {
			if err := b.Ack(ctx, nil); err != nil {
				return ingest.Batch{}, err
			}
			continue
		}
		return b, nil
	}
}

// delivery is what Read took for one batch.
type delivery struct {
	msgs []jetstream.Msg
	recs []ingest.Record
	keys []ingest.Digest // of recs, to forget if the batch fails
	bufs []*[]byte       // decompressed bodies, which recs alias
	size int64           // of the frames, for the pending-bytes account
}

// take adds the message and its records that are not duplicates.
func (q *Queue) take(d *delivery, m jetstream.Msg) {
	d.msgs = append(d.msgs, m)
	h := m.Headers()
	cluster := h.Get(HeaderCluster)
	now := q.opts.Now()
	cg := q.m.cluster(cluster)
	written := now
	var origin string
	if md, err := m.Metadata(); err == nil {
		written = md.Timestamp
		if md.NumDelivered > 1 {
			q.m.Redelivered.Inc()
		}
		origin = "queue:" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	// Only a bug or disk corruption makes body or frames.Decode fail; what
	// is intact is still processed and the problem is logged where it
	// happened.
	data, buf, err := q.body(m.Data(), h)
	if err != nil {
		q.m.Corrupt.Inc()
		q.log.Error("read queue message", "err", err, "cluster", cluster, "origin", origin)
		return
	}
	if buf != nil {
		d.bufs = append(d.bufs, buf)
	}
	d.size += int64(len(data))
	fs, err := frames.Decode(data, nil)
	if err != nil {
		q.m.Corrupt.Inc()
		q.log.Error("decode queue message", "err", err, "cluster", cluster, "origin", origin)
	}
	cg.take(int64(len(fs)), written)
	n := len(d.recs)
	d.recs, d.keys = q.dedup.Frames(fs, cluster, origin, now, d.recs, d.keys)
	q.m.Read.Add(len(d.recs) - n)
}

// ackFunc acknowledges the batch's messages. The last ack waits for the
// server's confirmation; acks on one connection are handled in order, so
// the whole batch is then recorded.
func (q *Queue) ackFunc(d *delivery) ingest.AckFunc {
	var done atomic.Bool
	return func(ctx context.Context, err error) error {
		if done.Swap(true) {
			return errors.New("ack: batch already acknowledged")
		}
		// The records are not read after this.
		for _, b := range d.bufs {
			q.putBuf(b)
		}
		if err != nil {
			// The records were not processed: let them through again.
			q.dedup.Forget(d.keys)
			var errs []error
			for _, m := range d.msgs {
				errs = append(errs, m.Nak())
			}
			if e := errors.Join(errs...); e != nil {
				return fmt.Errorf("nak queue messages: %w", e)
			}
			return nil
		}
		for i, m := range d.msgs {
			var aerr error
			if i == len(d.msgs)-1 {
				aerr = m.DoubleAck(ctx)
			} else {
				aerr = m.Ack()
			}
			if aerr != nil {
				return fmt.Errorf("ack queue message: %w", aerr)
			}
		}
		if q.stored.Add(-d.size) < 0 {
			q.stored.Store(0)
		}
		return nil
	}
}
