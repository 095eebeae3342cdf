package pipeline

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-k8s/vigil/detect"
)

// BaselinesFile holds, in the data dir, the first_seen baselines
// (docs/first-seen.md). Unlike the window state, it is kept across starts:
// it is read at start, written every BaselineCheckpoint while baselines
// change, and at a graceful stop.
const BaselinesFile = "baselines.json"

// BaselineCheckpoint is how often serve writes the baselines when they
// changed. After a crash, what was learned since the last checkpoint comes
// back from the queue's re-read (RebuildSpan), which is longer.
const BaselineCheckpoint = time.Minute

// loadBaselines reads the baselines file into the engine of an
// unpartitioned queue, before the window state is restored or rebuilt (a
// rebuild re-reads the events since the last checkpoint onto it). A file
// that cannot be read is set aside as BaselinesFile.bad and learning starts
// afresh; baselines of rules that changed are dropped and relearned.
func (s *Server) loadBaselines() error {
	if s.whole == nil || !hasFirstSeen(s.cfg.Rules) {
		return nil
	}
	path := filepath.Join(s.cfg.DataDir, BaselinesFile)
	if _, ok := s.cfg.Queue.(Rereader); !ok {
		s.log.Info("the queue cannot be re-read: after a crash, baselines learn again what they learned since the last checkpoint",
			"checkpoint", BaselineCheckpoint)
	} else if span := RebuildSpan(s.cfg.Rules, s.cfg.Lateness); span < 2*BaselineCheckpoint {
		s.log.Warn("the rebuild span is shorter than two baseline checkpoints: after a crash, baselines may learn again what they learned since the last one",
			"span", span, "checkpoint", BaselineCheckpoint)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load baselines: %w", err)
	}
	defer f.Close()
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	lerr := s.whole.engine.LoadBaselines(bufio.NewReaderSize(f, 1<<20))
	switch {
	case errors.Is(lerr, detect.ErrBadBaseline):
		bad := path + ".bad"
		if err := os.Rename(path, bad); err != nil {
			return fmt.Errorf("load baselines: %w", err)
		}
		s.log.Error("baselines file unreadable, set aside; baselines learn afresh from what was read", "file", bad, "err", lerr)
	case lerr != nil:
		s.log.Warn("baselines partly loaded", "file", path, "err", lerr)
	default:
		s.log.Info("loaded baselines", "file", path)
	}
	return nil
}

// checkpointBaselines writes the baselines when they changed and the file
// is BaselineCheckpoint old. Baselines are not written while alerts wait
// to be stored: they would hold the values of alerts a crash would then
// lose. It runs with engineMu held.
func (s *Server) checkpointBaselines(now time.Time) {
	if s.whole == nil || !s.whole.engine.BaselinesChanged() ||
		len(s.alerts.pending) > 0 || s.whole.engine.PendingAlerts() > 0 {
		return
	}
	if fi, err := os.Stat(filepath.Join(s.cfg.DataDir, BaselinesFile)); err == nil && now.Sub(fi.ModTime()) < BaselineCheckpoint {
		return
	}
	if err := s.saveBaselines(); err != nil {
		s.log.Error("checkpoint baselines", "err", err)
	}
}

// saveBaselines writes the baselines into the data dir through a temporary
// file, so a crash mid-write leaves the previous file whole. It runs with
// engineMu held.
func (s *Server) saveBaselines() error {
	if s.whole == nil || !hasFirstSeen(s.cfg.Rules) {
		return nil
	}
	start := time.Now()
	if err := writeAtomic(s.cfg.DataDir, BaselinesFile, s.whole.engine.SaveBaselines); err != nil {
		s.set.GetOrCreateCounter("vigil_serve_baseline_save_errors_total").Inc()
		return fmt.Errorf("save baselines: %w", err)
	}
	s.whole.engine.BaselinesSaved()
	s.set.GetOrCreateCounter("vigil_serve_baseline_saves_total").Inc()
	s.set.GetOrCreateFloatCounter("vigil_serve_baseline_save_seconds_total").Add(time.Since(start).Seconds())
	return nil
}

// writeAtomic writes dir/name with write: a temporary file, synced, then
// renamed over name, and the directory synced.
func writeAtomic(dir, name string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(dir, name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = write(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, name))
	}
	if err == nil {
		if d, derr := os.Open(dir); derr == nil {
			err = d.Sync()
			d.Close()
		}
	}
	return err
}

func hasFirstSeen(rs *detect.RuleSet) bool {
	for _, r := range rs.Rules {
		if r.Spec.Window != nil && r.Spec.Window.Kind == detect.WindowFirstSeen {
			return true
		}
	}
	return false
}
