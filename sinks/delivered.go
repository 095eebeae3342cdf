package sinks

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// deliveredPoll is how often WaitDelivered looks at the sinks' progress.
const deliveredPoll = 20 * time.Millisecond

// StoredAlert is an alert of the stream VIGIL_ALERTS.
type StoredAlert struct{ Fingerprint, Rule string }

// WaitDelivered returns nil once every sink has taken every alert
// dispatched so far and finished with it (delivered, dead-lettered or
// filtered away): in durable mode when each sink's consumer has nothing
// pending or unacknowledged, in memory mode when each sink's buffer is
// empty and no Send is in flight. When ctx ends first it returns ctx's
// error, naming the sinks still behind.
func (d *Dispatcher) WaitDelivered(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("wait for sink delivery: %w", err)
	}
	tick := time.NewTicker(deliveredPoll)
	defer tick.Stop()
	var behind []string
	for {
		// A check cut short by ctx says nothing about the sinks: the
		// error reports the last complete one.
		if now := d.behind(ctx); ctx.Err() == nil {
			if len(now) == 0 {
				return nil
			}
			behind = now
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("alerts not yet delivered (%s): %w", strings.Join(behind, "; "), ctx.Err())
		case <-tick.C:
		}
	}
}

// behind describes the sinks that have not finished with every alert.
func (d *Dispatcher) behind(ctx context.Context) []string {
	var out []string
	if d.dur != nil {
		for _, dc := range d.dur.consumers {
			info, err := dc.c.Info(ctx)
			switch {
			case err != nil:
				out = append(out, fmt.Sprintf("sink %s, consumer %s: %v", dc.t.name, dc.name, err))
			case info.NumPending > 0 || info.NumAckPending > 0:
				out = append(out, fmt.Sprintf("sink %s, consumer %s: %d pending, %d unacknowledged",
					dc.t.name, dc.name, info.NumPending, info.NumAckPending))
			}
		}
		return out
	}
	for _, q := range d.mem.queues {
		if n := q.t.m.pending.Load(); n > 0 {
			out = append(out, fmt.Sprintf("sink %s: %d buffered or in flight", q.t.name, n))
		}
	}
	return out
}

// RecentStored returns the last n alerts of VIGIL_ALERTS, oldest first
// (fewer when the stream holds fewer). A restarted process uses them to
// learn which alerts were stored before a crash. In memory mode nothing
// is stored and it returns nil.
func (d *Dispatcher) RecentStored(ctx context.Context, n int) ([]StoredAlert, error) {
	if d.dur == nil || n <= 0 {
		return nil, nil
	}
	out, err := d.dur.recent(ctx, uint64(n))
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", AlertStream, err)
	}
	return out, nil
}

// recent reads the alerts from n before the stream's last sequence to
// it, with an ordered consumer; alerts stored meanwhile are left out.
func (d *durable) recent(ctx context.Context, n uint64) ([]StoredAlert, error) {
	st, err := d.js.Stream(ctx, AlertStream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil, nil
	}
	first := max(info.State.FirstSeq, last-min(last, n-1))
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: first,
		// The server drops the consumer soon after the last fetch.
		InactiveThreshold: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	var out []StoredAlert
	for {
		batch, err := c.FetchNoWait(500)
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("read message metadata: %w", err)
			}
			if md.Sequence.Stream > last {
				return out, nil
			}
			var a struct {
				Fingerprint string `json:"fingerprint"`
				Rule        string `json:"rule"`
			}
			// A message that is not an alert (or has no fingerprint)
			// names nothing to reconcile; its sinks dead-letter it.
			if json.Unmarshal(m.Data(), &a) == nil && a.Fingerprint != "" {
				out = append(out, StoredAlert{Fingerprint: a.Fingerprint, Rule: a.Rule})
			}
			if md.Sequence.Stream == last {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if got == 0 {
			return out, nil
		}
	}
}
