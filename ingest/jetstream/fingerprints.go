package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AlertBucket is the key-value bucket of sent alert fingerprints.
const AlertBucket = "vigil_alerts"

// Fingerprints is the durable set of alerts already sent. Entries expire
// after the bucket's TTL, which must cover the span a restart re-reads
// (plus the longest cooldown), so that a re-read event cannot raise a sent
// alert again. Methods are safe for concurrent use and block on the server.
type Fingerprints struct {
	kv jetstream.KeyValue
}

// Fingerprints opens (or creates) the sent-alert bucket with the given TTL.
func (q *Queue) Fingerprints(ctx context.Context, ttl time.Duration) (*Fingerprints, error) {
	kv, err := q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      AlertBucket,
		Description: "fingerprints of alerts already sent",
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", AlertBucket, err)
	}
	return &Fingerprints{kv: kv}, nil
}

// Has reports whether the fingerprint was recorded and has not expired.
func (f *Fingerprints) Has(ctx context.Context, fp string) (bool, error) {
	_, err := f.kv.Get(ctx, fp)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("look up alert %s: %w", fp, err)
}

// Add records a sent alert; value is kept for people who inspect the bucket
// (the rule and time of the alert).
func (f *Fingerprints) Add(ctx context.Context, fp string, value []byte) error {
	if _, err := f.kv.Put(ctx, fp, value); err != nil {
		return fmt.Errorf("record alert %s: %w", fp, err)
	}
	return nil
}
