package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fastjson"

	"github.com/vigil-k8s/vigil/ingest"
)

// eventClock is the pipeline's event-time clock: the newest event time
// processed and the wall time it was seen. While no events arrive it
// advances with the wall clock, so windows close on an idle stream.
type eventClock struct {
	max, seenAt time.Time
}

// note advances the clock to t, the time of the last event of a batch
// (zero when the batch had none).
func (c *eventClock) note(t time.Time, now time.Time) {
	if t.After(c.max) {
		c.max = t
	}
	c.seenAt = now
}

// now is the event time that corresponds to wall time now.
func (c *eventClock) now(now time.Time) time.Time {
	if c.max.IsZero() {
		return time.Time{}
	}
	return c.max.Add(now.Sub(c.seenAt))
}

// lastEventTime is the event time of a batch's last record that has one.
// It must be read before the batch is acknowledged: the records' memory
// belongs to the queue after that.
func lastEventTime(b ingest.Batch) time.Time {
	for i := len(b.Records) - 1; i >= 0; i-- {
		if t, ok := eventTime(b.Records[i].Data); ok {
			return t
		}
	}
	return time.Time{}
}

// firstEventTime is the event time of a batch's first record that has one.
func firstEventTime(b ingest.Batch) time.Time {
	for _, r := range b.Records {
		if t, ok := eventTime(r.Data); ok {
			return t
		}
	}
	return time.Time{}
}

func eventTime(data []byte) (time.Time, bool) {
	v := fastjson.GetBytes(data, "requestReceivedTimestamp")
	if v == nil {
		v = fastjson.GetBytes(data, "stageTimestamp")
	}
	t, err := ingest.ParseTime(v)
	return t, err == nil && v != nil
}

// consume is the detection loop: read a batch, process it (which emits,
// stores the alerts and then acknowledges), and while idle advance the
// event-time clock and check for silent clusters.
func (s *Server) consume(ctx context.Context) error {
	s.consuming.Store(true)
	defer s.consuming.Store(false)
	processed := map[string]*metrics.Counter{}
	lastTick := time.Now()
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		b, err := s.cfg.Queue.Read(rctx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil && s.cfg.BeforeBatch != nil {
			s.cfg.BeforeBatch(ctx)
		}
		switch {
		case err == nil:
			counts := countClusters(b)
			if perr := s.process(ctx, b); perr != nil {
				// The batch was not acknowledged and comes again.
				s.log.Error("process batch", "err", perr, "records", len(b.Records))
				select {
				case <-time.After(time.Second):
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			for _, cc := range counts {
				c := processed[cc.cluster]
				if c == nil {
					c = s.set.GetOrCreateCounter(`vigil_serve_processed_events_total{cluster="` + cc.cluster + `"}`)
					processed[cc.cluster] = c
				}
				c.Add(cc.n)
			}
		case errors.Is(err, context.DeadlineExceeded):
		default:
			return fmt.Errorf("read queue: %w", err)
		}
		if now := time.Now(); now.Sub(lastTick) >= time.Second {
			lastTick = now
			if errors.Is(err, context.DeadlineExceeded) {
				// Idle: let the queue correct its estimate of what waits.
				s.cfg.Queue.Drained(ctx)
			}
			if err := s.tick(ctx, now); err != nil {
				s.log.Error("advance windows", "err", err)
			}
		}
	}
}

type clusterCount struct {
	cluster string
	n       int
}

// countClusters counts a batch's records per cluster, in runs: a batch
// rarely mixes clusters.
func countClusters(b ingest.Batch) []clusterCount {
	var out []clusterCount
	for _, r := range b.Records {
		if n := len(out); n > 0 && out[n-1].cluster == r.Cluster {
			out[n-1].n++
			continue
		}
		out = append(out, clusterCount{r.Cluster, 1})
	}
	return out
}

// process runs one batch through the engine. Its alerts are stored before
// the batch is acknowledged; what the batch says about event time is read
// before that too, since its records belong to the queue afterwards.
func (s *Server) process(ctx context.Context, b ingest.Batch) error {
	last := lastEventTime(b)
	ack := b.Ack
	b.Ack = func(ctx context.Context, err error) error {
		if err == nil {
			if ferr := s.flushAlerts(ctx); ferr != nil {
				ack(ctx, ferr)
				return ferr
			}
		}
		return ack(ctx, err)
	}
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	if s.cfg.Incidents != nil {
		for _, r := range b.Records {
			s.cfg.Incidents.Scan(r.Data)
		}
	}
	if err := s.engine.Process(ctx, b); err != nil {
		return err
	}
	s.clock.note(last, time.Now())
	return nil
}

// tick moves the event-time clock by the wall time passed since the last
// event, so windows close while nothing arrives, and raises
// audit-pipeline-silent for clusters that stopped sending.
func (s *Server) tick(ctx context.Context, now time.Time) error {
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	defer func() {
		if err := s.flushAlerts(ctx); err != nil {
			s.log.Error("flush alerts", "err", err)
		}
	}()
	if t := s.clock.now(now); !t.IsZero() {
		if err := s.engine.Advance(ctx, t); err != nil {
			return err
		}
	}
	seen := s.recv.LastSeen()
	clusters := make([]string, 0, len(seen))
	for c := range seen {
		clusters = append(clusters, c)
	}
	sort.Strings(clusters)
	for _, c := range clusters {
		last := seen[c]
		if now.Sub(last) < s.cfg.SilenceAfter || s.silent[c].Equal(last) {
			continue
		}
		s.silent[c] = last
		s.m.silent.Inc()
		if err := s.emit(silentAlert(c, last, now)); err != nil {
			return err
		}
	}
	return nil
}

// waitProcessed waits until detection acknowledged everything stored or
// ctx is done (graceful shutdown).
func (s *Server) waitProcessed(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		done, err := s.cfg.Queue.Drained(ctx)
		if done {
			return
		}
		if err != nil {
			s.log.Warn("check queue", "err", err)
		}
		select {
		case <-ctx.Done():
			s.log.Warn("stopping with unprocessed events; they are processed after the restart")
			return
		case <-t.C:
		}
	}
}
