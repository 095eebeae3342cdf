package sinks

import (
	"context"

	"github.com/vigil-k8s/vigil/detect"
)

// Sink delivers alerts to one destination.
//
// Send blocks until the alerts are delivered or delivery failed; it does
// not retry. retry reports whether the same call may succeed later (a
// network error, 408, 429, 5xx); false with an error means the alerts are
// rejected for good and are dead-lettered. Send must not keep or modify the
// alerts after it returns. The dispatcher calls Send from one goroutine per
// sink, but implementations are safe for concurrent use. Errors never
// contain credentials (tokens, webhook URLs).
type Sink interface {
	Send(ctx context.Context, alerts ...detect.Alert) (retry bool, err error)
	// String names the sink for logs, e.g. "slack[team-a]".
	String() string
}

// batcher is implemented by sinks that know how many alerts one Send
// should carry (one request, one message).
type batcher interface{ MaxBatch() int }

// closer is implemented by sinks that hold a file or a connection.
type closer interface{ Close() error }
