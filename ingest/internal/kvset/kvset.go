// Package kvset is a durable set of strings with a time to live, kept in
// a JetStream key-value bucket: the set of alerts already sent, which the
// embedded and the external NATS queues share the code of.
package kvset

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Set is a bucket of keys that expire after its TTL. Methods are safe for
// concurrent use and block on the server.
type Set struct {
	kv jetstream.KeyValue
}

// Open opens (or creates) the bucket with the given TTL and number of
// copies (0 or 1: one).
func Open(ctx context.Context, js jetstream.JetStream, bucket, description string, ttl time.Duration, replicas int) (*Set, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: description,
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", bucket, err)
	}
	return &Set{kv: kv}, nil
}

// Has reports whether the key was recorded and has not expired.
func (s *Set) Has(ctx context.Context, key string) (bool, error) {
	_, err := s.kv.Get(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("look up alert %s: %w", key, err)
}

// Add records a key; value is kept for people who inspect the bucket (the
// rule and time of the alert).
func (s *Set) Add(ctx context.Context, key string, value []byte) error {
	if _, err := s.kv.Put(ctx, key, value); err != nil {
		return fmt.Errorf("record alert %s: %w", key, err)
	}
	return nil
}
