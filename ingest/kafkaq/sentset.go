package kafkaq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// SentSuffix names the topic of sent-alert fingerprints: Topic-sent.
const SentSuffix = "-sent"

// SentSet is the set of alerts already sent, shared by the replicas: a
// replica that gains a partition and rebuilds its windows does not send
// again what the replica before it sent. It is the topic Topic-sent (one
// partition, compacted by fingerprint, expiring after the TTL), which every
// replica follows into memory; Sync catches up with what the others wrote
// until now. Methods are safe for concurrent use.
type SentSet struct {
	q     *Queue
	topic string
	ttl   time.Duration
	w     *kafka.Writer
	r     *kafka.Reader

	mu   sync.Mutex
	seen map[string]time.Time // fingerprint -> when it was written
	next int64                // the next offset to follow
	// moved is closed and replaced whenever next moves.
	moved chan struct{}

	stop context.CancelFunc
	done chan struct{}
}

// SentSet creates the topic of sent-alert fingerprints when missing, reads
// what it holds of the last ttl, and follows it from then on.
func (q *Queue) SentSet(ctx context.Context, ttl time.Duration) (*SentSet, error) {
	topic := q.opts.Topic + SentSuffix
	if err := q.ensureStateTopic(ctx, topic, 1, []kafka.ConfigEntry{
		{ConfigName: "cleanup.policy", ConfigValue: "compact,delete"},
		{ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(ttl.Milliseconds(), 10)},
	}); err != nil {
		return nil, err
	}
	s := &SentSet{q: q, topic: topic, ttl: ttl, seen: map[string]time.Time{}, moved: make(chan struct{}),
		done: make(chan struct{})}
	s.w = &kafka.Writer{Addr: kafka.TCP(q.opts.Brokers...), Topic: topic, Transport: q.tr,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, WriteTimeout: 30 * time.Second}
	s.r = kafka.NewReader(kafka.ReaderConfig{Brokers: q.opts.Brokers, Topic: topic, Partition: 0,
		Dialer: q.dialer, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 250 * time.Millisecond})
	fail := func(err error) (*SentSet, error) {
		s.r.Close()
		s.w.Close()
		return nil, fmt.Errorf("open sent alerts %s: %w", topic, err)
	}
	if err := s.r.SetOffsetAt(ctx, q.opts.Now().Add(-ttl)); err != nil {
		return fail(err)
	}
	s.next = max(s.r.Offset(), 0)
	fctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.follow(fctx)
	if err := s.Sync(ctx); err != nil {
		s.close()
		return nil, err
	}
	q.onClose(s.close)
	return s, nil
}

// follow reads the topic into seen until ctx ends.
func (s *SentSet) follow(ctx context.Context) {
	defer close(s.done)
	lastPrune := time.Now()
	for {
		m, err := s.r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.q.log.Warn("follow sent alerts", "topic", s.topic, "err", err)
			}
			return
		}
		now := s.q.opts.Now()
		s.mu.Lock()
		if now.Sub(m.Time) < s.ttl {
			s.seen[string(m.Key)] = m.Time
		}
		s.next = m.Offset + 1
		close(s.moved)
		s.moved = make(chan struct{})
		if time.Since(lastPrune) > time.Minute {
			lastPrune = time.Now()
			for fp, at := range s.seen {
				if now.Sub(at) >= s.ttl {
					delete(s.seen, fp)
				}
			}
		}
		s.mu.Unlock()
	}
}

// Sync returns once what the other replicas wrote before the call is
// known here: a replica that gains a partition calls it before it
// rebuilds the partition's windows.
func (s *SentSet) Sync(ctx context.Context) error {
	offs, err := s.q.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		s.topic: {kafka.LastOffsetOf(0)}}})
	if err != nil {
		return fmt.Errorf("sync sent alerts: %w", err)
	}
	var end int64
	for _, po := range offs.Topics[s.topic] {
		if po.Error != nil {
			return fmt.Errorf("sync sent alerts: %w", po.Error)
		}
		end = po.LastOffset
	}
	for {
		s.mu.Lock()
		next, moved := s.next, s.moved
		s.mu.Unlock()
		if next >= end {
			return nil
		}
		select {
		case <-moved:
		case <-s.done:
			return errors.New("sync sent alerts: stopped following " + s.topic)
		case <-ctx.Done():
			return fmt.Errorf("sync sent alerts at %d of %d: %w", next, end, ctx.Err())
		}
	}
}

// Has reports whether the fingerprint was recorded within the TTL.
func (s *SentSet) Has(_ context.Context, fp string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.seen[fp]
	return ok && s.q.opts.Now().Sub(at) < s.ttl, nil
}

// Add records a sent alert; value is kept for people who read the topic
// (the rule and time of the alert).
func (s *SentSet) Add(ctx context.Context, fp string, value []byte) error {
	now := s.q.opts.Now()
	if err := s.w.WriteMessages(ctx, kafka.Message{Key: []byte(fp), Value: value, Time: now}); err != nil {
		return fmt.Errorf("record alert %s: %w", fp, err)
	}
	s.mu.Lock()
	s.seen[fp] = now
	s.mu.Unlock()
	return nil
}

func (s *SentSet) close() error {
	s.stop()
	<-s.done
	return errors.Join(s.r.Close(), s.w.Close())
}
