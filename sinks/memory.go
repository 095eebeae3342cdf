package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vigil-k8s/vigil/detect"
)

// memQueue is one sink's bounded in-memory buffer and the goroutine that
// drains it.
type memQueue struct {
	t     *target
	red   redactor
	ch    chan queued
	block bool
	// dropLogged rate-limits the "buffer full" log to one per burst.
	dropLogged bool
	done       chan struct{}
}

type queued struct {
	a  detect.Alert
	at time.Time
}

// memory is the in-memory delivery mode.
type memory struct {
	log    *slog.Logger
	queues []*memQueue
	// ctx ends the sinks' retries when Close runs out of time.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards closed against Dispatch racing Close: Dispatch holds it
	// shared while it enqueues, Close exclusively while it closes the
	// channels, so no send ever hits a closed channel.
	mu     sync.RWMutex
	closed bool
}

func newMemory(targets []*target, log *slog.Logger) *memory {
	ctx, cancel := context.WithCancel(context.Background())
	m := &memory{log: log, ctx: ctx, cancel: cancel}
	for _, t := range targets {
		q := &memQueue{t: t, ch: make(chan queued, t.buffer), block: t.block, done: make(chan struct{})}
		m.queues = append(m.queues, q)
		go q.run(ctx)
	}
	return m
}

// dispatch enqueues each alert for the sinks that want it. It blocks only
// for sinks configured with on_full: block (stdout and file by default),
// and then at most until ctx ends.
func (m *memory) dispatch(ctx context.Context, r *router, alerts []detect.Alert) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return errors.New("dispatch alerts: dispatcher is closed")
	}
	now := time.Now()
	for i := range alerts {
		for _, q := range m.queues {
			if !r.wants(q.t.name, &alerts[i]) {
				continue
			}
			it := queued{a: alerts[i], at: now}
			// pending counts an alert before the sink's goroutine can
			// take it, so it never reads zero while one is in flight.
			q.t.m.pending.Add(1)
			if q.block {
				select {
				case q.ch <- it:
				case <-ctx.Done():
					q.t.m.pending.Add(-1)
					return fmt.Errorf("dispatch alerts to %s: %w", q.t.sink, ctx.Err())
				}
				continue
			}
			select {
			case q.ch <- it:
				q.dropLogged = false
			default:
				q.t.m.pending.Add(-1)
				q.t.m.dropped.Inc()
				if !q.dropLogged {
					q.t.log.Error("sink buffer full, dropping alerts (raise buffer: or fix the sink)",
						"rule", alerts[i].Rule, "buffer", cap(q.ch))
					q.dropLogged = true
				}
			}
		}
	}
	return nil
}

func (q *memQueue) run(ctx context.Context) {
	defer close(q.done)
	batch := make([]detect.Alert, 0, q.t.batch)
	times := make([]time.Time, 0, q.t.batch)
	// Alerts arrive unredacted (routing reads no secret field); they are
	// redacted here, before the sink sees them.
	for it := range q.ch {
		batch, times = append(batch[:0], q.red.redact(it.a)), append(times[:0], it.at)
	fill:
		for len(batch) < q.t.batch {
			select {
			case it, ok := <-q.ch:
				if !ok {
					break fill
				}
				batch, times = append(batch, q.red.redact(it.a)), append(times, it.at)
			default:
				break fill
			}
		}
		err := q.t.retry.deliver(ctx, batch, nil)
		q.t.m.pending.Add(-int64(len(batch)))
		var perm *PermanentError
		switch {
		case err == nil:
			for _, at := range times {
				q.t.m.delay.UpdateDuration(at)
			}
		case errors.As(err, &perm):
			q.t.m.deadLettered.Add(len(batch))
			for i := range batch {
				q.t.log.Error("alert dead-lettered", "rule", batch[i].Rule,
					"fingerprint", batch[i].Fingerprint, "reason", perm.Err)
			}
		default:
			q.t.m.failed.Add(len(batch))
			q.t.log.Error("alerts not delivered before shutdown", "alerts", len(batch), "err", err)
		}
	}
}

// close stops accepting alerts and waits until every queue is drained or
// ctx ends; then it aborts the retries still running and reports how many
// alerts were left undelivered.
func (m *memory) close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	for _, q := range m.queues {
		close(q.ch)
	}
	m.mu.Unlock()
	var errs []error
	for _, q := range m.queues {
		select {
		case <-q.done:
		case <-ctx.Done():
			m.cancel()
			<-q.done
			errs = append(errs, fmt.Errorf("flush %s: %w", q.t.sink, ctx.Err()))
		}
	}
	m.cancel()
	return errors.Join(errs...)
}
