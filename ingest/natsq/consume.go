package natsq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/frames"
	"github.com/vigil-k8s/vigil/ingest/internal/qmetrics"
	"github.com/vigil-k8s/vigil/ingest/partition"
)

// item is what a partition hands Read: a delivered message, or an
// ownership change (msg nil) with, for a loss, the Ack that hands the
// partition over.
type item struct {
	part   int
	change partition.Change
	msg    jetstream.Msg
	ack    ingest.AckFunc
}

// part is one partition as this replica sees it.
type part struct {
	n    int
	cons jetstream.Consumer
	g    *qmetrics.Partition

	mu sync.Mutex
	// cc is set while this replica pulls from the partition.
	cc jetstream.ConsumeContext
	// pinned says messages came to this replica under a pin it has not
	// lost since; closing that it is stopping, and the handler gives
	// messages back.
	pinned, closing bool
}

func (p *part) reading() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cc != nil || p.pinned
}

func (p *part) wasPinned() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pinned
}

// push hands an item to Read, waiting for room; false once the queue
// closed.
func (q *Queue) push(it item) bool {
	select {
	case q.items <- it:
		return true
	case <-q.done:
		return false
	}
}

// claim starts pulling partition p. The server delivers to this replica
// only once it is pinned; the first message announces the gain.
func (q *Queue) claim(p *part) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cc != nil {
		return nil
	}
	// A pinned replica keeps its pin by pulling again within PinnedTTL.
	expiry := max(q.opts.PinnedTTL/2, time.Second)
	cc, err := p.cons.Consume(func(m jetstream.Msg) {
		p.mu.Lock()
		closing, gained := p.closing, !p.pinned
		if !closing {
			p.pinned = true
		}
		p.mu.Unlock()
		if closing {
			m.Nak()
			return
		}
		if gained {
			q.m.Gained.Inc()
			q.m.Owned.Add(1)
			q.log.Info("partition gained", "partition", p.n, "member", q.opts.Member)
			if !q.push(item{part: p.n, change: partition.Gained}) {
				m.Nak()
				return
			}
		}
		if !q.push(item{part: p.n, msg: m}) {
			m.Nak()
		}
	},
		jetstream.PullMaxMessages(64),
		jetstream.PullExpiry(expiry),
		jetstream.PullPriorityGroup(priorityGroup),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrPinIDMismatch) {
				// Another replica holds the pin now: this one was too slow
				// to pull, or the partition was handed over.
				q.lose(p, nil)
				return
			}
			q.log.Warn("queue delivery", "partition", p.n, "err", err)
		}))
	if err != nil {
		return fmt.Errorf("pull partition %d: %w", p.n, err)
	}
	p.cc = cc
	return nil
}

// lose announces that the pin of p is gone, if it was held, with ack as
// the announcement's Ack. It reports whether the pin was held.
func (q *Queue) lose(p *part, ack ingest.AckFunc) bool {
	p.mu.Lock()
	was := p.pinned
	p.pinned = false
	p.mu.Unlock()
	if !was {
		return false
	}
	q.m.Lost.Inc()
	q.m.Owned.Add(-1)
	p.g.Pending.Store(0)
	q.log.Info("partition lost", "partition", p.n, "member", q.opts.Member)
	q.push(item{part: p.n, change: partition.Lost, ack: ack})
	return true
}

// stop ends pulling from p: messages already buffered go back to the
// stream, and it returns once the handler has run for the last time, or
// when abort is closed.
func (p *part) stop(abort <-chan struct{}) {
	p.mu.Lock()
	cc := p.cc
	p.cc = nil
	p.closing = cc != nil
	p.mu.Unlock()
	if cc == nil {
		return
	}
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-abort:
		cc.Stop()
	}
	p.mu.Lock()
	p.closing = false
	p.mu.Unlock()
}

// release gives partition p up for another replica: stop pulling and
// announce the loss after the last records handed out. The announcement's
// Ack unpins the partition, so that the replica it now belongs to is
// pinned at once, and only then: the records handed out before are
// acknowledged by then, and the next owner's replay covers them. Without
// the Ack the pin expires after PinnedTTL.
func (q *Queue) release(p *part) {
	p.stop(q.done)
	q.lose(p, func(ctx context.Context, _ error) error {
		if p.reading() {
			return nil // claimed again meanwhile
		}
		if err := q.events.UnpinConsumer(ctx, consumerPrefix+strconv.Itoa(p.n), priorityGroup); err != nil {
			return fmt.Errorf("hand over partition %d: %w", p.n, err)
		}
		return nil
	})
}

// Owned lists the partitions this replica holds the pin of.
func (q *Queue) Owned() []int {
	var out []int
	for _, p := range q.parts {
		if p.wasPinned() {
			out = append(out, p.n)
		}
	}
	return out
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

// ReadPartition blocks for one message and takes what else of the same
// partition is already delivered, up to MaxBatch records, or returns an
// ownership change. Messages of a partition come in stream order, so the
// events of one key come in the order published (redeliveries aside).
// Duplicates (by key, within the de-duplication window) are left out. A
// record's Origin is "queue:" and its message's stream sequence.
func (q *Queue) ReadPartition(ctx context.Context) (partition.Batch, error) {
	if err := q.own.join(ctx); err != nil {
		return partition.Batch{}, err
	}
	for {
		if err := q.fill(ctx); err != nil {
			return partition.Batch{}, err
		}
		p, _ := q.backlog.turn()
		it, _ := q.backlog.pop(p, false)
		if it.msg == nil {
			return partition.Batch{Batch: ingest.Batch{Ack: it.ack}, Partition: p, Change: it.change}, nil
		}
		d := &delivery{part: p}
		q.take(d, it.msg)
		for len(d.recs) < q.opts.MaxBatch {
			nx, ok := q.backlog.pop(p, true)
			if !ok {
				break
			}
			q.take(d, nx.msg)
		}
		q.backlog.rotate(p)
		b := partition.Batch{Batch: ingest.Batch{Records: d.recs, Ack: q.ackFunc(d)}, Partition: p, Pos: d.pos}
		if len(d.recs) == 0 {
			if err := b.Ack(ctx, nil); err != nil {
				return partition.Batch{}, err
			}
			continue
		}
		q.outMu.Lock()
		q.out[d] = struct{}{}
		q.outMu.Unlock()
		return b, nil
	}
}

// fill waits until the backlog holds an item, then moves into it what
// else the channel holds.
func (q *Queue) fill(ctx context.Context) error {
	if q.backlog.len() == 0 {
		select {
		case it := <-q.items:
			q.backlog.add(it)
		case <-ctx.Done():
			return ctx.Err()
		case <-q.done:
			return fmt.Errorf("read: %w", ingest.ErrClosed)
		}
	}
	for q.backlog.len() < backlogMax {
		select {
		case it := <-q.items:
			q.backlog.add(it)
		default:
			return nil
		}
	}
	return nil
}

// delivery is what Read took for one batch.
type delivery struct {
	part int
	pos  uint64 // the highest stream sequence taken
	msgs []jetstream.Msg
	recs []ingest.Record
	keys []ingest.Digest // of recs, to forget if the batch fails
	bufs []*[]byte       // decompressed bodies, which recs alias
	// done is set by the first of Ack and Close.
	done atomic.Bool
}

// take adds the message and its records that are not duplicates.
func (q *Queue) take(d *delivery, m jetstream.Msg) {
	d.msgs = append(d.msgs, m)
	h := m.Headers()
	cluster := h.Get(HeaderCluster)
	now := q.opts.Now()
	var origin string
	if md, err := m.Metadata(); err == nil {
		q.parts[d.part].g.Take(md.Timestamp)
		if md.NumDelivered > 1 {
			q.m.Redelivered.Inc()
		}
		origin = "queue:" + strconv.FormatUint(md.Sequence.Stream, 10)
		d.pos = max(d.pos, md.Sequence.Stream)
	}
	// Only a bug or corruption makes Body or Decode fail; what is intact
	// is still processed and the problem is logged where it happened.
	data, buf, err := q.bufs.Body(m.Data(), h.Get(HeaderEncoding), q.maxPayload)
	if err != nil {
		q.m.Corrupt.Inc()
		q.log.Error("read queue message", "err", err, "cluster", cluster, "origin", origin)
		return
	}
	if buf != nil {
		d.bufs = append(d.bufs, buf)
	}
	q.pending.NoteMessage(len(data))
	fs, err := frames.Decode(data, nil)
	if err != nil {
		q.m.Corrupt.Inc()
		q.log.Error("decode queue message", "err", err, "cluster", cluster, "origin", origin)
	}
	n := len(d.recs)
	d.recs, d.keys = q.dedup.Frames(fs, cluster, origin, now, d.recs, d.keys)
	q.m.Read.Add(len(d.recs) - n)
}

// ackFunc acknowledges the batch's messages. The last ack waits for the
// server's confirmation; acks on one connection are handled in order, so
// the whole batch is then recorded.
func (q *Queue) ackFunc(d *delivery) ingest.AckFunc {
	return func(ctx context.Context, err error) error {
		if d.done.Swap(true) {
			return errors.New("ack: batch already acknowledged or the queue closed")
		}
		q.outMu.Lock()
		delete(q.out, d)
		q.outMu.Unlock()
		for _, b := range d.bufs {
			q.bufs.Put(b)
		}
		if err != nil {
			q.forget(d)
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
		return nil
	}
}

// forget lets the records of a batch that was not processed through again.
func (q *Queue) forget(d *delivery) {
	q.dedup.Forget(d.keys)
}

// nakWaiting gives back, at Close, what was delivered and not processed:
// the items not yet read and the batches not yet acknowledged. Their
// Ack then fails.
func (q *Queue) nakWaiting() {
	for _, it := range q.backlog.drain() {
		if it.msg != nil {
			it.msg.Nak()
		}
	}
	for {
		select {
		case it := <-q.items:
			if it.msg != nil {
				it.msg.Nak()
			}
			continue
		default:
		}
		break
	}
	q.outMu.Lock()
	defer q.outMu.Unlock()
	for d := range q.out {
		if !d.done.Swap(true) {
			for _, m := range d.msgs {
				m.Nak()
			}
		}
		delete(q.out, d)
	}
}
