package jetstream

import (
	"context"
	"time"

	"github.com/vigil-k8s/vigil/ingest/internal/kvset"
)

// AlertBucket is the key-value bucket of sent alert fingerprints.
const AlertBucket = "vigil_alerts"

// Fingerprints is the durable set of alerts already sent (Has, Add).
// Entries expire after the bucket's TTL, which must cover the span a
// restart re-reads (plus the longest cooldown), so that a re-read event
// cannot raise a sent alert again. Methods are safe for concurrent use and
// block on the server.
type Fingerprints = kvset.Set

// Fingerprints opens (or creates) the sent-alert bucket with the given TTL.
func (q *Queue) Fingerprints(ctx context.Context, ttl time.Duration) (*Fingerprints, error) {
	return kvset.Open(ctx, q.js, AlertBucket, "fingerprints of alerts already sent", ttl, 1)
}
