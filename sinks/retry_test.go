package sinks

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// funcSink is a Sink whose Send is a function.
type funcSink func(ctx context.Context, alerts ...detect.Alert) (bool, error)

func (f funcSink) Send(ctx context.Context, a ...detect.Alert) (bool, error) { return f(ctx, a...) }
func (f funcSink) String() string                                            { return "func[test]" }

func TestRetrier_deliver(t *testing.T) {
	fails := []error{
		&sinkutil.StatusError{Code: 503},
		&sinkutil.StatusError{Code: 503},
		&sinkutil.StatusError{Code: 429, After: 42 * time.Second},
		&sinkutil.StatusError{Code: 502},
		&sinkutil.StatusError{Code: 502},
		&sinkutil.StatusError{Code: 502},
		&sinkutil.StatusError{Code: 502},
	}
	calls := 0
	s := funcSink(func(ctx context.Context, a ...detect.Alert) (bool, error) {
		calls++
		if calls <= len(fails) {
			return true, fails[calls-1]
		}
		return false, nil
	})
	set := metrics.NewSet()
	m := newSinkMetrics(set, "t")
	r := newRetrier(s, RetryConfig{Initial: detect.Duration(time.Second), Max: detect.Duration(8 * time.Second)}, m, slog.New(slog.DiscardHandler))
	var waits []time.Duration
	r.sleep = func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return nil }
	if err := r.deliver(t.Context(), make([]detect.Alert, 2), nil); err != nil {
		t.Fatal(err)
	}
	// Backoff doubles from 1s to the 8s cap, each jittered into [d/2, d];
	// the 429's Retry-After of 42s wins over its backoff.
	bounds := []time.Duration{time.Second, 2 * time.Second, 42 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	if len(waits) != len(bounds) {
		t.Fatalf("waits %v, want %d", waits, len(bounds))
	}
	for i, w := range waits {
		lo := bounds[i] / 2
		if i == 2 {
			lo = bounds[i]
		}
		if w < lo || w > bounds[i] {
			t.Errorf("wait %d = %v, want in [%v, %v]", i, w, lo, bounds[i])
		}
	}
	if m.sent.Get() != 2 || m.retried.Get() != 14 || m.failed.Get() != 14 {
		t.Errorf("sent %d retried %d failed %d", m.sent.Get(), m.retried.Get(), m.failed.Get())
	}
}

func TestRetrier_deliver_permanent(t *testing.T) {
	calls := 0
	s := funcSink(func(ctx context.Context, a ...detect.Alert) (bool, error) {
		calls++
		return false, &sinkutil.StatusError{Code: 400, Body: "bad alert"}
	})
	r := newRetrier(s, RetryConfig{}, newSinkMetrics(metrics.NewSet(), "t"), slog.New(slog.DiscardHandler))
	err := r.deliver(t.Context(), make([]detect.Alert, 1), nil)
	var perm *PermanentError
	if !errors.As(err, &perm) || calls != 1 {
		t.Errorf("err %v after %d calls, want a PermanentError after 1", err, calls)
	}
}

func TestRetrier_deliver_maxElapsed(t *testing.T) {
	s := funcSink(func(ctx context.Context, a ...detect.Alert) (bool, error) {
		return true, errors.New("connection refused")
	})
	r := newRetrier(s, RetryConfig{Initial: detect.Duration(time.Millisecond), MaxElapsed: detect.Duration(50 * time.Millisecond)},
		newSinkMetrics(metrics.NewSet(), "t"), slog.New(slog.DiscardHandler))
	var perm *PermanentError
	if err := r.deliver(t.Context(), make([]detect.Alert, 1), nil); !errors.As(err, &perm) {
		t.Errorf("err %v, want a PermanentError once max_elapsed passed", err)
	}
}

func TestRetrier_deliver_canceled(t *testing.T) {
	s := funcSink(func(ctx context.Context, a ...detect.Alert) (bool, error) { return true, errors.New("down") })
	r := newRetrier(s, RetryConfig{Initial: detect.Duration(time.Hour)}, newSinkMetrics(metrics.NewSet(), "t"), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := r.deliver(ctx, make([]detect.Alert, 1), nil)
	var perm *PermanentError
	if !errors.Is(err, context.Canceled) || errors.As(err, &perm) {
		t.Errorf("err %v, want context.Canceled and no dead-letter", err)
	}
}
