package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/vigil-k8s/vigil/detect"
)

// snapshotVersion is the version of the saved partition state's header.
// Version 1 had no baselines: it is read as version 2 without them.
const snapshotVersion = 2

// snapshotHeader is the first line of a partition's saved state; the
// engine's snapshot of its windows follows it (Windows bytes), then the
// partition's first_seen baselines when the rules have any (the file
// format of docs/first-seen.md).
type snapshotHeader struct {
	Version   int `json:"version"`
	Partition int `json:"partition"`
	// Pos is the queue position the state covers: every event of the
	// partition up to it, and none after.
	Pos uint64 `json:"pos"`
	// Saved is the wall time of the save; Clock the newest event time
	// processed then.
	Saved time.Time `json:"saved"`
	Clock time.Time `json:"clock"`
	// Windows is the size of the window state after the header.
	Windows int `json:"windows"`
}

// encodeSnapshot is the saved form of a partition's state.
// baselines says whether to add the first_seen baselines.
func encodeSnapshot(ps *partState, now time.Time, baselines bool) ([]byte, error) {
	var windows bytes.Buffer
	if err := ps.engine.Snapshot(&windows); err != nil {
		return nil, fmt.Errorf("save window state of partition %d: %w", ps.n, err)
	}
	var buf bytes.Buffer
	h := snapshotHeader{Version: snapshotVersion, Partition: ps.n, Pos: ps.pos, Saved: now.UTC(), Clock: ps.clock.max,
		Windows: windows.Len()}
	if err := json.NewEncoder(&buf).Encode(&h); err != nil {
		return nil, fmt.Errorf("save window state of partition %d: %w", ps.n, err)
	}
	buf.Write(windows.Bytes())
	if baselines {
		if err := ps.engine.SaveBaselines(&buf); err != nil {
			return nil, fmt.Errorf("save baselines of partition %d: %w", ps.n, err)
		}
	}
	return buf.Bytes(), nil
}

// loadSnapshot restores into ps the state saved last for its partition and
// reports whether it did. A state saved longer ago than span is not used:
// the queue may no longer hold all that came after it, and its windows
// have closed anyway.
func (s *Server) loadSnapshot(ctx context.Context, ps *partState, span time.Duration) (bool, error) {
	data, err := s.cfg.Snapshots.Load(ctx, ps.n)
	if err != nil || data == nil {
		return false, err
	}
	line, body, _ := bytes.Cut(data, []byte("\n"))
	var h snapshotHeader
	if err := json.Unmarshal(line, &h); err != nil {
		return false, fmt.Errorf("saved state of partition %d: header: %w", ps.n, err)
	}
	if h.Version < 1 || h.Version > snapshotVersion || h.Partition != ps.n || h.Pos == 0 {
		return false, fmt.Errorf("saved state of partition %d: version %d of partition %d at %d, want version %d",
			ps.n, h.Version, h.Partition, h.Pos, snapshotVersion)
	}
	if h.Windows < 0 || h.Windows > len(body) {
		return false, fmt.Errorf("saved state of partition %d: window state of %d bytes in %d", ps.n, h.Windows, len(body))
	}
	if h.Version == 1 {
		h.Windows = len(body)
	}
	body, baselines := body[:h.Windows], body[h.Windows:]
	// Baselines live for weeks: they are taken however old the save, and
	// before the windows, which a replay of the queue then adds to.
	if len(baselines) > 0 {
		if err := ps.engine.LoadBaselines(bytes.NewReader(baselines)); err != nil {
			s.log.Warn("baselines partly restored", "partition", ps.n, "err", err)
		}
	}
	if age := time.Since(h.Saved); age > span {
		s.log.Info("saved window state older than the rebuild span, not used", "partition", ps.n, "age", age.Round(time.Second))
		return false, nil
	}
	if err := ps.engine.Restore(bytes.NewReader(body)); err != nil {
		if errors.Is(err, detect.ErrBadSnapshot) {
			return false, fmt.Errorf("saved state of partition %d: %w", ps.n, err)
		}
		// Rules changed since the save: their state was dropped.
		s.log.Warn("window state partly restored", "partition", ps.n, "err", err)
	}
	ps.pos, ps.savedPos, ps.savedAt = h.Pos, h.Pos, time.Now()
	ps.clock = eventClock{max: h.Clock, seenAt: h.Saved}
	return true, nil
}
