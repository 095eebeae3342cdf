// Package pending estimates, for a queue shared by several replicas, how
// much published event data waits for detection: the messages the server
// says are waiting, as last sampled, times the average event bytes per
// message, plus what this replica published since the sample. Publish
// refuses with ingest.ErrFull over a limit, after sampling again.
package pending

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// Interval is how often Run samples; Admit samples again when the
// estimate says full and the last sample is older than resampleAfter.
const (
	Interval      = 2 * time.Second
	resampleAfter = 100 * time.Millisecond
)

// Estimate is the estimate. Sample returns the messages waiting or
// unacknowledged on the server.
type Estimate struct {
	Sample func(ctx context.Context) (int64, error)
	Log    *slog.Logger

	mu        sync.Mutex // serialises samples
	sampledAt atomic.Int64
	msgs      atomic.Int64
	since     atomic.Int64
	avg       atomic.Int64 // running average of event bytes per message
}

// Bytes is the estimate of published and unprocessed event bytes.
func (e *Estimate) Bytes() int64 { return e.msgs.Load()*e.avg.Load() + e.since.Load() }

// NoteMessage folds the event bytes of a message into the average.
func (e *Estimate) NoteMessage(raw int) {
	old := e.avg.Load()
	if old == 0 {
		e.avg.Store(int64(raw))
		return
	}
	e.avg.Store(old + (int64(raw)-old)/16)
}

// Published records a publish of n messages holding raw event bytes.
func (e *Estimate) Published(raw int64, n int) {
	e.since.Add(raw)
	if n > 0 {
		e.NoteMessage(int(raw) / n)
	}
}

// Admit returns an error wrapping ingest.ErrFull when publishing size
// more bytes would take the estimate over limit, sampling first if the
// last sample is not fresh.
func (e *Estimate) Admit(ctx context.Context, size, limit int64) error {
	if e.Bytes()+size <= limit {
		return nil
	}
	if time.Since(time.Unix(0, e.sampledAt.Load())) > resampleAfter {
		if err := e.Take(ctx); err != nil {
			e.Log.Warn("sample queue pending", "err", err)
		}
	}
	if b := e.Bytes(); b+size > limit {
		return fmt.Errorf("%d bytes pending of %d: %w", b, limit, ingest.ErrFull)
	}
	return nil
}

// Take samples the server now.
func (e *Estimate) Take(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	start := time.Now()
	before := e.since.Load()
	n, err := e.Sample(ctx)
	if err != nil {
		return err
	}
	e.msgs.Store(n)
	// What was published during the sample may or may not be in it; it
	// counts once more until the next sample.
	e.since.Add(-before)
	e.sampledAt.Store(start.UnixNano())
	return nil
}

// Run samples every Interval until done is closed.
func (e *Estimate) Run(done <-chan struct{}) {
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), Interval)
			if err := e.Take(ctx); err != nil {
				e.Log.Warn("sample queue pending", "err", err)
			}
			cancel()
		}
	}
}
