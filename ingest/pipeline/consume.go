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
	"github.com/vigil-k8s/vigil/ingest/partition"
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
// event-time clocks and check for silent clusters. With a partitioned
// queue it also follows the partitions gained and lost, and saves their
// window state now and then.
func (s *Server) consume(ctx context.Context) error {
	s.consuming.Store(true)
	defer s.consuming.Store(false)
	processed := map[string]*metrics.Counter{}
	lastTick := time.Now()
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		b, err := s.read(rctx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case err == nil && b.Change == partition.Gained:
			if err := s.gainPartition(ctx, b.Partition); err != nil {
				return err
			}
		case err == nil && b.Change == partition.Lost:
			s.losePartition(ctx, b)
		case err == nil:
			if s.cfg.BeforeBatch != nil {
				s.cfg.BeforeBatch(ctx)
			}
			counts := countClusters(b.Batch)
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
			if s.parted != nil {
				s.saveDue(ctx, now)
			}
		}
	}
}

// read takes the next batch: of the whole queue (Partition -1), or of one
// partition or an announcement of a partitioned queue.
func (s *Server) read(ctx context.Context) (partition.Batch, error) {
	if s.parted != nil {
		return s.parted.ReadPartition(ctx)
	}
	b, err := s.cfg.Queue.Read(ctx)
	return partition.Batch{Batch: b, Partition: -1}, err
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

// process runs one batch through the engine of its partition. Its alerts
// are stored before the batch is acknowledged; what the batch says about
// event time is read before that too, since its records belong to the
// queue afterwards.
func (s *Server) process(ctx context.Context, b partition.Batch) error {
	last := lastEventTime(b.Batch)
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	ps := s.whole
	if s.parted != nil {
		if ps = s.parts[b.Partition]; ps == nil {
			// Records come after their partition's gain; should one come
			// without, its state is built now.
			var err error
			if ps, err = s.gainLocked(ctx, b.Partition); err != nil {
				b.Ack(ctx, err)
				return err
			}
		}
		ps.noteClusters(b.Records, time.Now())
	}
	ack := b.Ack
	b.Ack = func(ctx context.Context, err error) error {
		if err == nil {
			if ferr := s.flushAlerts(ctx); ferr != nil {
				ack(ctx, ferr)
				return ferr
			}
		}
		aerr := ack(ctx, err)
		switch {
		case err != nil:
		case errors.Is(aerr, partition.ErrUncommitted):
			// Processed, but the queue delivers it again to the next owner:
			// the state is ahead of the queue until a later batch is
			// recorded, and is not saved meanwhile.
			ps.ahead = true
			return nil
		case aerr == nil:
			ps.pos, ps.ahead = max(ps.pos, b.Pos), false
		}
		return aerr
	}
	if err := ps.engine.Process(ctx, b.Batch); err != nil {
		return err
	}
	ps.clock.note(last, time.Now())
	return nil
}

// tick moves the event-time clocks by the wall time passed since the last
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
	states := []*partState{s.whole}
	if s.parted != nil {
		states = s.sortedParts()
	}
	for _, ps := range states {
		if t := ps.clock.now(now); !t.IsZero() {
			if err := ps.engine.Advance(ctx, t); err != nil {
				return err
			}
		}
	}
	s.checkpointBaselines(now)
	seen, grid := s.recv.LastSeen(), time.Duration(0)
	if s.parted != nil {
		// The webhook of one replica sees the clusters that happen to send
		// to it; detection sees every cluster with events in the
		// partitions it owns. Replicas see silence at about the same time:
		// the fingerprint on a grid lets the shared SentSet keep one alert.
		seen, grid = s.partitionsLastSeen(), s.cfg.SilenceAfter
	}
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
		if err := s.emit(silentAlert(c, last, now, grid)); err != nil {
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
