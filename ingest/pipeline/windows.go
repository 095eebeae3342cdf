package pipeline

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

// WindowsFile holds, in the data dir, the window state saved at a graceful
// stop.
const WindowsFile = "windows.json"

// MaxRebuildHold bounds how much of a cooldown or suppression period a
// rebuild re-reads history for. Rules hold alerts for up to a day; re-reading
// a day of a busy cluster would take many minutes at every restart.
const MaxRebuildHold = time.Hour

// RebuildSpan is how much already processed history a restart after a
// crash re-reads: the longest window plus its cooldown (a cooldown
// suppresses alerts for that long after a window fired), or the longest
// suppression of a single-event rule, plus the allowed lateness, with
// cooldowns and suppressions counted up to MaxRebuildHold. A Rereader
// queue should keep acknowledged events at least that long.
//
// Longer holds survive a crash through the SentSet instead: an alert is
// named by its rule, key and hold period, so a window that fires again in
// the same period after the restart is not sent twice. What a crash can
// change is one alert more, in the period after the one that fired, before
// the first run's hold would have ended.
func RebuildSpan(rs *detect.RuleSet, lateness time.Duration) time.Duration {
	return holdSpan(rs, lateness, MaxRebuildHold)
}

// SentSpan is how long a SentSet must remember an alert: the longest window
// and hold, uncapped, plus the allowed lateness.
func SentSpan(rs *detect.RuleSet, lateness time.Duration) time.Duration {
	return holdSpan(rs, lateness, 0)
}

// holdSpan is the longest window plus hold (capped at limit when limit > 0)
// of rs, plus lateness.
func holdSpan(rs *detect.RuleSet, lateness, limit time.Duration) time.Duration {
	if lateness <= 0 {
		lateness = detect.DefaultLateness
	}
	hold := func(d time.Duration) time.Duration {
		if limit > 0 {
			return min(d, limit)
		}
		return d
	}
	var longest time.Duration
	for _, r := range rs.Rules {
		if w := r.Spec.Window; w != nil {
			longest = max(longest, time.Duration(w.Within)+hold(time.Duration(w.Cooldown)))
		}
		longest = max(longest, hold(r.SuppressFor()))
	}
	return longest + lateness
}

// rebuildState is set while window state is rebuilt from the queue.
type rebuildState struct {
	active bool
	// start is the event time of the first event re-read; full is set
	// when the re-read began at the queue's first event ever.
	start time.Time
	full  bool
}

// cutShort reports whether a window alert raised during a rebuild may come
// from a window that began before the re-read span: what it says now is not
// what the first run saw, so it is not sent.
func (r *rebuildState) cutShort(rule *detect.Rule, al detect.Alert) bool {
	if !r.active || r.full || rule == nil || rule.Spec.Window == nil {
		return false
	}
	w := rule.Spec.Window
	return al.FirstTime.Before(r.start.Add(time.Duration(w.Within) + time.Duration(w.Cooldown)))
}

// saveWindows writes the engine's window state into the data dir, through
// a temporary file so a crash mid-write leaves no half a snapshot. It runs
// with engineMu held.
func (s *Server) saveWindows() error {
	dir := s.cfg.DataDir
	path := filepath.Join(dir, WindowsFile)
	tmp, err := os.CreateTemp(dir, WindowsFile+".*")
	if err != nil {
		return fmt.Errorf("save window state: %w", err)
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	err = s.whole.engine.Snapshot(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save window state: %w", err)
	}
	s.log.Info("saved window state", "file", path)
	return nil
}

// restoreWindows loads the state saved at the last graceful stop, if any,
// and removes the file: a later crash must rebuild from the queue, not
// from this older state. An unreadable file is logged and rebuilt over.
func (s *Server) restoreWindows() (bool, error) {
	path := filepath.Join(s.cfg.DataDir, WindowsFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("restore window state: %w", err)
	}
	s.engineMu.Lock()
	rerr := s.whole.engine.Restore(bufio.NewReader(f))
	s.engineMu.Unlock()
	f.Close()
	if err := os.Remove(path); err != nil {
		return false, fmt.Errorf("restore window state: %w", err)
	}
	if errors.Is(rerr, detect.ErrBadSnapshot) {
		s.log.Warn("window state unreadable, rebuilding from the queue", "file", path, "err", rerr)
		return false, nil
	}
	if rerr != nil {
		// Rules changed since the stop: their state was dropped.
		s.log.Warn("window state partly restored", "err", rerr)
	}
	s.log.Info("restored window state", "file", path)
	return true, nil
}

// rebuildWindows re-reads the acknowledged events of the rebuild span so
// that windows open before a crash still fire. Alerts already sent are not
// sent again (SentSet), and alerts from windows the span may have cut short
// are not sent at all.
func (s *Server) rebuildWindows(ctx context.Context) error {
	rr, ok := s.cfg.Queue.(Rereader)
	if !ok {
		return nil
	}
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	s.rebuild = rebuildState{active: true}
	defer func() { s.rebuild.active = false }()
	start := time.Now()
	first := true
	info, err := rr.Replay(ctx, RebuildSpan(s.cfg.Rules, s.cfg.Lateness), func(b ingest.Batch, ri ingest.ReplayInfo) error {
		if first {
			first = false
			s.rebuild.start, s.rebuild.full = firstEventTime(b), ri.FromStart
		}
		last := lastEventTime(b)
		if err := s.whole.engine.Process(ctx, b); err != nil {
			return err
		}
		s.whole.clock.note(last, time.Now())
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild windows: %w", err)
	}
	if err := s.flushAlerts(ctx); err != nil {
		return err
	}
	if info.Records > 0 {
		s.log.Info("rebuilt window state", "records", info.Records, "messages", info.Messages,
			"from", info.Start, "to", info.End, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}
