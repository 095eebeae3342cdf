package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/vigil-k8s/vigil/detect"
)

// maxRetryAfter caps a server's Retry-After so a bad header cannot park a
// sink for hours.
const maxRetryAfter = 10 * time.Minute

// retryAfterer is implemented by errors that carry the server's
// Retry-After (see sinkutil.StatusError).
type retryAfterer interface{ RetryAfter() time.Duration }

// PermanentError is a delivery the sink rejected for good: the alerts are
// dead-lettered with Err as the reason.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "rejected: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// retrier is the one retry loop of all sinks.
type retrier struct {
	sink Sink
	cfg  RetryConfig
	m    *sinkMetrics
	log  *slog.Logger
	// sleep waits d or until ctx is done; tests replace it to observe the
	// delays without waiting.
	sleep func(ctx context.Context, d time.Duration) error
}

func newRetrier(s Sink, cfg RetryConfig, m *sinkMetrics, log *slog.Logger) *retrier {
	if cfg.Initial == 0 {
		cfg.Initial = detect.Duration(DefaultRetryInitial)
	}
	if cfg.Max == 0 {
		cfg.Max = detect.Duration(DefaultRetryMax)
	}
	if cfg.Max < cfg.Initial {
		cfg.Max = cfg.Initial
	}
	return &retrier{sink: s, cfg: cfg, m: m, log: log, sleep: sleepCtx}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backoff is the delay before retry n (0-based): Initial doubled n times,
// capped at Max, then jittered to between half and all of it so that sinks
// recovering together do not retry in lockstep.
func (r *retrier) backoff(n int) time.Duration {
	d := r.cfg.Initial.D()
	for i := 0; i < n && d < r.cfg.Max.D(); i++ {
		d *= 2
	}
	d = min(d, r.cfg.Max.D())
	half := d / 2
	return half + rand.N(half+1)
}

// deliver sends alerts until the sink accepts them. It returns nil when
// delivered, a *PermanentError when the sink rejected them (or MaxElapsed
// passed), and ctx's error, wrapping the last failure, when ctx ends first.
// beforeRetry, if not nil, runs before every wait (durable mode extends its
// ack deadline there).
func (r *retrier) deliver(ctx context.Context, alerts []detect.Alert, beforeRetry func()) error {
	start := time.Now()
	lastMsg := ""
	for attempt := 0; ; attempt++ {
		t0 := time.Now()
		retry, err := r.sink.Send(ctx, alerts...)
		r.m.sendDuration.UpdateDuration(t0)
		if err == nil {
			r.m.sent.Add(len(alerts))
			if attempt > 0 {
				r.log.Info("sink recovered", "attempts", attempt+1)
			}
			return nil
		}
		r.m.failed.Add(len(alerts))
		if !retry {
			return &PermanentError{Err: err}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("deliver to %s: %w (last error: %v)", r.sink, ctx.Err(), err)
		}
		delay := r.backoff(attempt)
		var ra retryAfterer
		if errors.As(err, &ra) && ra.RetryAfter() > delay {
			delay = min(ra.RetryAfter(), maxRetryAfter)
		}
		if me := r.cfg.MaxElapsed.D(); me > 0 && time.Since(start)+delay > me {
			return &PermanentError{Err: fmt.Errorf("gave up after %d attempts in %s: %w", attempt+1, me, err)}
		}
		// Log when the failure changes, not on every attempt, so one
		// dead sink cannot flood the log.
		if msg := err.Error(); msg != lastMsg {
			r.log.Warn("sink delivery failed, retrying", "err", err, "attempts", attempt+1, "delay", delay)
			lastMsg = msg
		}
		if beforeRetry != nil {
			beforeRetry()
		}
		if serr := r.sleep(ctx, delay); serr != nil {
			return fmt.Errorf("deliver to %s: %w (last error: %v)", r.sink, serr, err)
		}
		r.m.retried.Add(len(alerts))
	}
}
