package jetstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest/internal/qdedup"
)

// startServer takes the store directory's lock and starts the embedded
// server on it.
func startServer(dir string, syncAlways bool, maxPayload int) (*server.Server, *os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create queue directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, nil, err
	}
	ns, err := server.NewServer(&server.Options{
		ServerName:         "vigil",
		DontListen:         true,
		JetStream:          true,
		StoreDir:           dir,
		SyncAlways:         syncAlways,
		MaxPayload:         int32(maxPayload),
		JetStreamMaxMemory: 64 << 20,
		NoSigs:             true,
		NoLog:              true,
	})
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("create embedded queue server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		lock.Close()
		return nil, nil, fmt.Errorf("start embedded queue server in %s: not ready after 30s", dir)
	}
	return ns, lock, nil
}

// setup connects to the server, creates or updates the streams and the
// consumer, and starts delivery.
func (q *Queue) setup(ctx context.Context) error {
	q.m.init(q.opts.Metrics, q.opts.Now, q.Pending)
	q.dedup = qdedup.New(q.opts.DedupMaxKeys, q.opts.DedupWindow, q.m.Metrics)
	nc, err := nats.Connect("", nats.InProcessServer(q.ns), nats.Name("vigil"),
		nats.MaxReconnects(-1), nats.NoCallbacksAfterClientClose())
	if err != nil {
		return fmt.Errorf("connect to embedded queue server: %w", err)
	}
	q.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("open jetstream: %w", err)
	}
	q.js = js
	pubNC, err := nats.Connect("", nats.InProcessServer(q.ns), nats.Name("vigil-publish"),
		nats.MaxReconnects(-1), nats.NoCallbacksAfterClientClose())
	if err != nil {
		return fmt.Errorf("connect to embedded queue server: %w", err)
	}
	q.pubNC = pubNC
	// The async publish window bounds memory held by unacknowledged
	// publishes; past it PublishMsgAsync stalls and then fails with
	// ErrTooManyStalledMsgs, which Publish retries.
	q.pubJS, err = jetstream.New(pubNC, jetstream.WithPublishAsyncMaxPending(256),
		jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return fmt.Errorf("open jetstream: %w", err)
	}
	q.events, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        EventStream,
		Description: "audit events waiting for and kept after detection",
		Subjects:    []string{EventSubject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		// Refuse new data when full instead of dropping the oldest, which
		// may not be processed yet.
		Discard:    jetstream.DiscardNew,
		MaxAge:     q.opts.Retention,
		MaxBytes:   q.opts.MaxBytes,
		MaxMsgSize: int32(q.opts.MaxPayload),
		Duplicates: time.Minute,
		Replicas:   1,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", EventStream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "items refused inside otherwise valid webhook requests",
		Subjects:    []string{DeadSubject},
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      DefaultDeadLetterAge,
		MaxBytes:    1 << 30,
		MaxMsgSize:  int32(q.opts.MaxPayload),
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", DeadLetterStream, err)
	}
	// Messages an earlier run took and did not acknowledge would come back
	// only after AckWait: start the consumer again right after its ack
	// floor, so they come at once (de-duplication absorbs those that were
	// processed). Only this process consumes, so nothing is taken from a
	// peer.
	ccfg := jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "detection",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       q.opts.AckWait,
		MaxAckPending: 1024,
		MaxDeliver:    -1,
	}
	if old, err := q.events.Consumer(ctx, ConsumerName); err == nil {
		ci, err := old.Info(ctx)
		if err != nil {
			return fmt.Errorf("read consumer %s: %w", ConsumerName, err)
		}
		q.floor = ci.AckFloor.Stream
		if err := q.events.DeleteConsumer(ctx, ConsumerName); err != nil {
			return fmt.Errorf("reset consumer %s: %w", ConsumerName, err)
		}
		ccfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		ccfg.OptStartSeq = q.floor + 1
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("look up consumer %s: %w", ConsumerName, err)
	}
	q.cons, err = q.events.CreateConsumer(ctx, ccfg)
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", ConsumerName, err)
	}
	if err := q.initPending(ctx); err != nil {
		return err
	}
	q.cc, err = q.cons.Consume(q.deliver,
		jetstream.PullMaxMessages(64),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			q.log.Warn("queue delivery", "err", err)
		}))
	if err != nil {
		return fmt.Errorf("start consuming %s: %w", EventStream, err)
	}
	return nil
}

// initPending estimates the unprocessed event bytes left by an earlier run
// from the consumer's pending count, the stream's average message size and
// the compression of its last message.
func (q *Queue) initPending(ctx context.Context) error {
	ci, err := q.cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("read consumer %s: %w", ConsumerName, err)
	}
	si, err := q.events.Info(ctx)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", EventStream, err)
	}
	if si.State.Msgs == 0 {
		return nil
	}
	pending := ci.NumPending + uint64(ci.NumAckPending)
	est := float64(pending) * float64(si.State.Bytes) / float64(si.State.Msgs)
	if last, err := q.events.GetMsg(ctx, si.State.LastSeq); err == nil && len(last.Data) > 0 {
		if data, buf, err := q.body(last.Data, last.Header); err == nil {
			est *= float64(len(data)) / float64(len(last.Data))
			q.putBuf(buf)
		}
	}
	q.stored.Store(int64(est))
	return nil
}

// deliver runs on the consumer's delivery goroutine; blocking here is the
