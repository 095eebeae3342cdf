package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/jspub"
)

// DeadLetter implements ingest.DeadLetterer.
func (q *Queue) DeadLetter(ctx context.Context, items []ingest.DeadLetter) error {
	if !q.publishes.Enter() {
		return fmt.Errorf("store dead letter: %w", ingest.ErrClosed)
	}
	defer q.publishes.Leave()
	limit := q.opts.MaxPayload - frameSlack
	for _, it := range items {
		m := jspub.DeadLetter(DeadSubject, it, limit)
		if _, err := q.pubJS.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("store dead letter: %w", jspub.Classify(err))
		}
		q.m.Dead.Inc()
	}
	return nil
}

// StoredDeadLetter is an item of the dead-letter stream, as DeadLetter
// stored it.
type StoredDeadLetter struct {
	Seq     uint64
	Time    time.Time
	Cluster string
	Reason  string
	// Size is the item's size when it was received; Data holds only the
	// first part of an item larger than the payload limit.
	Size int
	Data []byte
}

// ReadDeadLetters opens the store in dir, taking its lock (so no vigil may
// be running on it), and calls fn with each dead-lettered item, oldest
// first, up to limit items (0: all). It changes nothing in the store.
func ReadDeadLetters(ctx context.Context, dir string, limit int, fn func(StoredDeadLetter) error) error {
	ns, lock, err := startServer(dir, false, DefaultMaxPayload)
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		lock.Close()
	}()
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("vigil-deadletters"))
	if err != nil {
		return fmt.Errorf("connect to embedded queue server: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("open jetstream: %w", err)
	}
	st, err := js.Stream(ctx, DeadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open stream %s: %w", DeadLetterStream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", DeadLetterStream, err)
	}
	n := 0
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		if limit > 0 && n == limit {
			return nil
		}
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // removed by age or size
		}
		if err != nil {
			return fmt.Errorf("read message %d of %s: %w", seq, DeadLetterStream, err)
		}
		it := StoredDeadLetter{Seq: seq, Time: m.Time, Cluster: m.Header.Get(HeaderCluster),
			Reason: m.Header.Get(HeaderReason), Size: len(m.Data), Data: m.Data}
		if t := m.Header.Get(headerTruncated); t != "" {
			if size, err := strconv.Atoi(t); err == nil {
				it.Size = size
			}
		}
		if err := fn(it); err != nil {
			return err
		}
		n++
	}
	return nil
}
