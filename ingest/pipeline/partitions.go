package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/partition"
)

// partState is the detection state of one partition of a partitioned queue
// (n ≥ 0), or of a whole unpartitioned queue (n = -1). Each partition has
// its own engine, so that its window state can be restored, saved and
// dropped on its own. It is guarded by Server.engineMu.
type partState struct {
	n      int
	engine *detect.Engine
	clock  eventClock
	// pos is the queue position of the last batch processed and recorded
	// by the queue; ahead is set while a batch processed since could not be
	// recorded (the partition is moving): the state holds events the queue
	// delivers again, and saving it would count them twice.
	pos   uint64
	ahead bool
	// savedPos and savedAt describe the last save.
	savedPos uint64
	savedAt  time.Time
	// seen is when this partition last processed events of each cluster.
	seen map[string]time.Time
}

// newPartState starts an engine for partition n.
func (s *Server) newPartState(n int) (*partState, error) {
	var observe func(*ingest.Record, *ingest.Event)
	if s.cfg.Incidents != nil {
		observe = func(_ *ingest.Record, ev *ingest.Event) { s.cfg.Incidents.Note(ev) }
	}
	e, err := detect.New(detect.Options{
		Rules: s.cfg.Rules, Workers: s.cfg.Workers, Emit: s.emit, Metrics: s.set, Observe: observe,
		Logger: s.log.With("component", "detect"), Lateness: s.cfg.Lateness,
		MaxKeysPerRule: s.cfg.MaxKeysPerRule, DistinctExact: s.cfg.DistinctExact,
		// The queue drops duplicates, with larger bounds.
		SourceDedups: true,
		OnReject: func(r ingest.Record, err error) {
			s.m.rejected.Inc()
			s.log.Warn("event rejected by detection", "cluster", r.Cluster, "origin", r.Origin, "err", err)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("start detection: %w", err)
	}
	return &partState{n: n, engine: e, seen: map[string]time.Time{}}, nil
}

func (ps *partState) noteClusters(recs []ingest.Record, now time.Time) {
	for i, r := range recs {
		if i == 0 || r.Cluster != recs[i-1].Cluster {
			ps.seen[r.Cluster] = now
		}
	}
}

// sortedParts lists the owned partitions in order.
func (s *Server) sortedParts() []*partState {
	out := make([]*partState, 0, len(s.parts))
	for _, n := range slices.Sorted(maps.Keys(s.parts)) {
		out = append(out, s.parts[n])
	}
	return out
}

// partitionsLastSeen is when the owned partitions last processed events of
// each cluster.
func (s *Server) partitionsLastSeen() map[string]time.Time {
	out := map[string]time.Time{}
	for _, ps := range s.parts {
		for c, at := range ps.seen {
			if at.After(out[c]) {
				out[c] = at
			}
		}
	}
	return out
}

// gainPartition builds the window state of a partition this replica has
// just gained, before its first records: the state its previous owner
// saved last, continued with what the queue acknowledged since; or,
// without a usable saved state, the partition's history of the rebuild
// span. Alerts the previous owner sent are not sent again (SentSet).
func (s *Server) gainPartition(ctx context.Context, p int) error {
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	_, err := s.gainLocked(ctx, p)
	return err
}

func (s *Server) gainLocked(ctx context.Context, p int) (*partState, error) {
	start := time.Now()
	if sy, ok := s.cfg.SentSet.(syncer); ok {
		if err := sy.Sync(ctx); err != nil {
			s.log.Warn("catch up with the alerts sent by other replicas", "partition", p, "err", err)
		}
	}
	ps, how, err := s.restorePartition(ctx, p)
	if ps == nil {
		return nil, err
	}
	if err != nil {
		// Detection goes on with empty windows: those open before the gain
		// miss their earlier events.
		s.log.Error("rebuild window state of a gained partition", "partition", p, "err", err)
	}
	s.parts[p] = ps
	if err := s.flushAlerts(ctx); err != nil {
		s.log.Error("store alerts of a rebuild", "partition", p, "err", err)
	}
	s.log.Info("partition gained", "partition", p, "state", how, "position", ps.pos,
		"took", time.Since(start).Round(time.Millisecond))
	return ps, nil
}

// restorePartition builds the state of partition p, retrying what fails
// for a moment, and else starts it empty; nil only when no engine starts.
func (s *Server) restorePartition(ctx context.Context, p int) (*partState, string, error) {
	var errs []error
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * time.Second):
			case <-ctx.Done():
			}
		}
		ps, how, err := s.restoreOnce(ctx, p)
		if err == nil {
			return ps, how, nil
		}
		errs = append(errs, err)
	}
	ps, err := s.newPartState(p)
	if err != nil {
		return nil, "", err
	}
	return ps, "empty", errors.Join(errs...)
}

// restoreOnce restores the saved state of p, if there is a usable one,
// and replays the queue after it; else it replays the rebuild span.
func (s *Server) restoreOnce(ctx context.Context, p int) (*partState, string, error) {
	span := RebuildSpan(s.cfg.Rules, s.cfg.Lateness)
	ps, err := s.newPartState(p)
	if err != nil {
		return nil, "", err
	}
	if s.cfg.Snapshots != nil {
		ok, err := s.loadSnapshot(ctx, ps, span)
		if err != nil {
			s.log.Warn("saved window state not usable, rebuilding from the queue", "partition", p, "err", err)
		}
		if ok {
			err := s.replayPartition(ctx, ps, partition.From{After: ps.pos})
			if err == nil {
				s.m.fromSnapshot.Inc()
				return ps, "snapshot", nil
			}
			if !errors.Is(err, partition.ErrAhead) {
				return ps, "", err
			}
			s.log.Warn("saved window state is ahead of the queue, rebuilding from the queue", "partition", p, "err", err)
			if ps, err = s.newPartState(p); err != nil {
				return nil, "", err
			}
		}
	}
	s.m.fromSpan.Inc()
	return ps, "rebuilt", s.replayPartition(ctx, ps, partition.From{Span: span})
}

// replayPartition runs the partition's acknowledged events from where
// from says through its engine. After a saved state nothing is cut short;
// from a span, alerts of windows the span may have cut are not sent.
func (s *Server) replayPartition(ctx context.Context, ps *partState, from partition.From) error {
	s.rebuild = rebuildState{active: true, full: from.After > 0}
	defer func() { s.rebuild = rebuildState{} }()
	first := true
	info, err := s.parted.ReplayPartition(ctx, ps.n, from, func(b ingest.Batch, ri ingest.ReplayInfo) error {
		if first && from.After == 0 {
			s.rebuild.start, s.rebuild.full = firstEventTime(b), ri.FromStart
		}
		first = false
		last := lastEventTime(b)
		if err := ps.engine.Process(ctx, b); err != nil {
			return err
		}
		ps.clock.note(last, time.Now())
		return nil
	})
	if err != nil {
		return fmt.Errorf("replay partition %d: %w", ps.n, err)
	}
	ps.pos = max(ps.pos, info.Floor)
	if info.Records > 0 {
		s.log.Info("replayed partition", "partition", ps.n, "records", info.Records, "from", info.Start, "to", info.End)
	}
	return nil
}

// losePartition drops the state of a partition this replica no longer
// owns, after emitting what it still holds. When the queue waits for the
// hand-over (the announcement has an Ack), the state is saved first, so
// that the next owner continues from it.
func (s *Server) losePartition(ctx context.Context, b partition.Batch) {
	s.engineMu.Lock()
	ps := s.parts[b.Partition]
	delete(s.parts, b.Partition)
	if ps != nil {
		if err := s.flushPartition(ctx, ps, b.Ack != nil); err != nil {
			s.log.Warn("hand over partition", "partition", b.Partition, "err", err)
		}
		ps.engine.Close()
	}
	s.engineMu.Unlock()
	s.log.Info("partition lost", "partition", b.Partition)
	if b.Ack != nil {
		if err := b.Ack(ctx, nil); err != nil {
			s.log.Warn("hand over partition", "partition", b.Partition, "err", err)
		}
	}
}

// flushPartition emits what the partition's engine still holds, stores
// the alerts and, with save, saves its state.
func (s *Server) flushPartition(ctx context.Context, ps *partState, save bool) error {
	if err := ps.engine.Flush(ctx); err != nil {
		return fmt.Errorf("flush windows of partition %d: %w", ps.n, err)
	}
	if err := s.flushAlerts(ctx); err != nil {
		return err
	}
	if save {
		return s.savePartition(ctx, ps, time.Now())
	}
	return nil
}

// savesPerTick bounds the partitions saved in one tick: saving is
// synchronous, and spreading it keeps detection from pausing long.
const savesPerTick = 2

// saveDue saves the state of the partitions whose last save is older than
// SnapshotInterval and that processed something since, the oldest first.
func (s *Server) saveDue(ctx context.Context, now time.Time) {
	if s.cfg.Snapshots == nil {
		return
	}
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	var due []*partState
	for _, ps := range s.parts {
		if ps.pos != ps.savedPos && !ps.ahead && now.Sub(ps.savedAt) >= s.cfg.SnapshotInterval {
			due = append(due, ps)
		}
	}
	slices.SortFunc(due, func(a, b *partState) int { return a.savedAt.Compare(b.savedAt) })
	for _, ps := range due[:min(len(due), savesPerTick)] {
		if err := s.savePartition(ctx, ps, now); err != nil {
			s.log.Warn("save window state", "partition", ps.n, "err", err)
		}
	}
}

// savePartition writes the state of ps to Snapshots, unless it is ahead
// of the queue.
func (s *Server) savePartition(ctx context.Context, ps *partState, now time.Time) error {
	if s.cfg.Snapshots == nil || ps.ahead || ps.pos == 0 {
		return nil // nothing recorded yet, or more than the queue recorded
	}
	data, err := encodeSnapshot(ps, now, hasFirstSeen(s.cfg.Rules))
	if err == nil {
		err = s.cfg.Snapshots.Save(ctx, ps.n, data)
	}
	if err != nil {
		s.m.saveErrors.Inc()
		return err
	}
	s.m.saves.Inc()
	ps.savedPos, ps.savedAt = ps.pos, now
	return nil
}
