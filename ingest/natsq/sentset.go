package natsq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SentSet is the set of alerts already sent, shared by the replicas: a
// replica that gains a partition and rebuilds its windows does not send
// again what the replica before it sent. Entries expire after the
// bucket's TTL, which must cover the span a rebuild re-reads plus the
// longest cooldown. Methods are safe for concurrent use.
type SentSet struct {
	kv jetstream.KeyValue
}

// SentSet opens (or creates) the bucket of sent-alert fingerprints, with
// as many copies as the streams.
func (q *Queue) SentSet(ctx context.Context, ttl time.Duration) (*SentSet, error) {
	kv, err := q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      AlertBucket,
		Description: "fingerprints of alerts already sent",
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    q.opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", AlertBucket, err)
	}
	return &SentSet{kv: kv}, nil
}

// Has reports whether the fingerprint was recorded and has not expired.
func (s *SentSet) Has(ctx context.Context, fp string) (bool, error) {
	_, err := s.kv.Get(ctx, fp)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("look up alert %s: %w", fp, err)
}

// Add records a sent alert; value is kept for people who inspect the
// bucket (the rule and time of the alert).
func (s *SentSet) Add(ctx context.Context, fp string, value []byte) error {
	if _, err := s.kv.Put(ctx, fp, value); err != nil {
		return fmt.Errorf("record alert %s: %w", fp, err)
	}
	return nil
}
