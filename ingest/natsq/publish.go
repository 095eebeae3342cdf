package natsq

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/frames"
	"github.com/vigil-k8s/vigil/ingest/internal/jspub"
)

// Publish implements ingest.Queue. Entries are grouped by cluster and
// partition token, keeping their order within a group, framed into
// messages of at most MaxPayload bytes, published asynchronously and
// awaited together: a nil return means the stream stored every message on
// a quorum of its replicas.
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
		size += int64(frames.Size(e))
	}
	if err := q.pending.Admit(ctx, size, q.opts.MaxPendingBytes); err != nil {
		q.m.Full.Inc()
		return fmt.Errorf("publish %d bytes: %w", size, err)
	}
	msgs, raw := q.split(entries)
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		f, err := jspub.Async(ctx, q.pubJS, m, nil, q.publishes.IsShut)
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	var errs []error
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs = append(errs, jspub.Classify(err))
		case <-ctx.Done():
			// The client may still resend these messages: their buffers
			// are not reused.
			return fmt.Errorf("publish: wait for queue acknowledgement: %w", ctx.Err())
		}
	}
	for _, m := range msgs {
		b := m.Data[:0]
		q.bufs.Put(&b)
		m.Data = nil
	}
	q.pending.Published(raw, len(msgs))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	q.m.Published.Add(len(entries))
	q.m.PublishedMsgs.Add(len(msgs))
	return nil
}

// group is a message being filled: entries of one cluster and one token.
type group struct {
	cluster, token string
	buf            *[]byte
	events         int
}

// split frames entries into messages, one group of (cluster, token) at a
// time in order of first appearance, each no larger than the payload
// limit (about frames.Target before compression), and returns them with
// the size of their frames before compression.
func (q *Queue) split(entries []ingest.Entry) ([]*nats.Msg, int64) {
	limit := min(q.maxPayload-frameSlack, frames.Target)
	var (
		open  = map[[2]string]*group{}
		order []*group
		msgs  []*nats.Msg
		raw   int64
		key   []byte
	)
	flush := func(g *group) {
		m := nats.NewMsg(subjectIn + g.token)
		if g.cluster != "" {
			m.Header.Set(HeaderCluster, g.cluster)
		}
		body, compressed := q.bufs.Compress(*g.buf)
		if compressed {
			m.Header.Set(HeaderEncoding, frames.EncodingS2)
		}
		m.Data = body
		raw += int64(len(*g.buf))
		q.bufs.Put(g.buf)
		msgs = append(msgs, m)
	}
	for _, e := range entries {
		key = q.keyer.Append(key[:0], e.Data)
		k := [2]string{e.Cluster, Token(key)}
		g := open[k]
		if g != nil && g.events > 0 && len(*g.buf)+frames.Size(e) > limit {
			flush(g)
			g.buf, g.events = q.bufs.Get(0), 0
		}
		if g == nil {
			g = &group{cluster: e.Cluster, token: k[1], buf: q.bufs.Get(0)}
			open[k] = g
			order = append(order, g)
		}
		*g.buf = frames.Append(*g.buf, e)
		g.events++
	}
	for _, g := range order {
		flush(g)
	}
	return msgs, raw
}

// Token is the subject token of a partition key: a hash, since keys may
// hold characters a subject cannot. The stream maps it to a partition.
func Token(key []byte) string {
	h := uint32(2166136261) // FNV-1a
	for _, c := range key {
		h ^= uint32(c)
		h *= 16777619
	}
	const digits = "0123456789abcdef"
	var b [8]byte
	for i := range b {
		b[i] = digits[h>>(28-4*i)&0xf]
	}
	return string(b[:])
}

// DeadLetter implements ingest.DeadLetterer.
func (q *Queue) DeadLetter(ctx context.Context, items []ingest.DeadLetter) error {
	if !q.publishes.Enter() {
		return fmt.Errorf("store dead letter: %w", ingest.ErrClosed)
	}
	defer q.publishes.Leave()
	limit := q.maxPayload - frameSlack
	for _, it := range items {
		m := jspub.DeadLetter(DeadSubject, it, limit)
		if _, err := q.pubJS.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("store dead letter: %w", jspub.Classify(err))
		}
		q.m.Dead.Inc()
	}
	return nil
}
