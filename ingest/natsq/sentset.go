package natsq

import (
	"context"
	"time"

	"github.com/vigil-k8s/vigil/ingest/internal/kvset"
)

// SentSet is the set of alerts already sent (Has, Add), shared by the
// replicas: a replica that gains a partition and rebuilds its windows does
// not send again what the replica before it sent. Entries expire after the
// bucket's TTL, which must cover the span a rebuild re-reads plus the
// longest cooldown. Methods are safe for concurrent use.
type SentSet = kvset.Set

// SentSet opens (or creates) the bucket of sent-alert fingerprints, with
// as many copies as the streams.
func (q *Queue) SentSet(ctx context.Context, ttl time.Duration) (*SentSet, error) {
	return kvset.Open(ctx, q.js, AlertBucket, "fingerprints of alerts already sent", ttl, q.opts.Replicas)
}
