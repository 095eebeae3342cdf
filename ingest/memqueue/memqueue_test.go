package memqueue

import (
	"testing"

	"github.com/vigil-k8s/vigil/ingest/queuetest"
)

func TestQueue_Contract(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, l queuetest.Limits) queuetest.Harness {
		return queuetest.Harness{Queue: New(Options{MaxPending: l.MaxPending}), Ordered: true}
	})
}
