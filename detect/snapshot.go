package detect

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// ErrBadSnapshot is returned by Restore for a snapshot it cannot read at
// all; nothing was restored. Other Restore errors name state that was
// dropped while the rest was restored.
var ErrBadSnapshot = errors.New("unreadable window snapshot")

// snapshotVersion is bumped when the format changes incompatibly. Version 1
// held whole events buffered for ordering; windows now fire on arrival and
// hold counts, times and auditIDs only.
const snapshotVersion = 2

// snapshot is the serialized state of an engine: window keys, suppression
// and eviction reports.
type snapshot struct {
	Version   int                                   `json:"version"`
	Watermark int64                                 `json:"watermark"`
	Seq       uint64                                `json:"seq"`
	RawRules  map[string]map[string]json.RawMessage `json:"rules"`
	// Shapes records each rule's window kind, step count and form: state
	// of a rule whose window changed since is dropped, never misread.
	Shapes   map[string]windowShape     `json:"shapes"`
	Suppress []suppressEntry            `json:"suppress,omitempty"`
	Evicted  map[string]*evictionReport `json:"evicted,omitempty"`
}

type windowShape struct {
	Kind  WindowKind `json:"kind"`
	Steps int        `json:"steps,omitempty"`
	// Buckets is set for threshold windows counted in buckets.
	Buckets bool `json:"buckets,omitempty"`
}

func shapeOf(r *Rule) windowShape {
	w := r.Spec.Window
	return windowShape{Kind: w.Kind, Steps: len(w.Steps), Buckets: w.Kind == WindowThreshold && w.Count > exactThreshold}
}

type suppressEntry struct {
	Key uint64 `json:"key"`
	suppressState
}

// Snapshot writes the engine's state as JSON, so a restarted engine
// continues where this one stopped. Call it from the goroutine that calls
// Process.
func (e *Engine) Snapshot(w io.Writer) error {
	s := snapshot{Version: snapshotVersion, Watermark: e.watermark, Seq: e.seq,
		RawRules: map[string]map[string]json.RawMessage{}, Shapes: map[string]windowShape{}, Evicted: e.evicted}
	for _, r := range e.rules.Rules {
		if r.Spec.Window != nil {
			s.Shapes[r.Spec.ID] = shapeOf(r)
		}
	}
	for _, sh := range e.shards {
		for r, keys := range sh.keys {
			if r.Spec.Window.Kind == WindowFirstSeen {
				// Baselines have their own file (SaveBaselines).
				continue
			}
			out := s.RawRules[r.Spec.ID]
			if out == nil {
				out = map[string]json.RawMessage{}
				s.RawRules[r.Spec.ID] = out
			}
			for k, win := range keys.all() {
				b, err := json.Marshal(win)
				if err != nil {
					return fmt.Errorf("snapshot rule %s: %w", r.Spec.ID, err)
				}
				out[k] = b
			}
		}
	}
	for k, st := range e.suppress.keys {
		s.Suppress = append(s.Suppress, suppressEntry{k, *st})
	}
	sort.Slice(s.Suppress, func(i, j int) bool { return s.Suppress[i].Key < s.Suppress[j].Key })
	if err := json.NewEncoder(w).Encode(&s); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// Restore loads a snapshot into a fresh engine. State of rules that no
// longer exist, or whose window changed, is dropped (and counted in the
// returned error, which is informational: the rest is restored). A
// snapshot of another version is refused whole with ErrBadSnapshot.
func (e *Engine) Restore(r io.Reader) error {
	var s snapshot
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	if s.Version != snapshotVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrBadSnapshot, s.Version, snapshotVersion)
	}
	e.watermark = max(e.watermark, s.Watermark)
	e.seq = max(e.seq, s.Seq)
	var dropped []error
	for id, keys := range s.RawRules {
		rule := e.rules.Rule(id)
		if rule == nil || rule.Spec.Window == nil || rule.Spec.Window.Kind == WindowFirstSeen || s.Shapes[id] != shapeOf(rule) {
			dropped = append(dropped, fmt.Errorf("rule %s: gone or its window changed, %d keys dropped", id, len(keys)))
			continue
		}
		for k, raw := range keys {
			t := e.shardFor(rule, k).table(rule)
			if err := json.Unmarshal(raw, t.add(k)); err != nil {
				t.del(k)
				dropped = append(dropped, fmt.Errorf("rule %s key %q: %w", id, k, err))
				continue
			}
			e.m.keys(rule).Inc()
		}
	}
	for _, se := range s.Suppress {
		st := se.suppressState
		e.suppress.keys[se.Key] = &st
	}
	for id, rep := range s.Evicted {
		if rep != nil {
			e.evicted[id] = rep
		}
	}
	return errors.Join(dropped...)
}

// shardFor returns the shard that owns (rule, key).
func (e *Engine) shardFor(r *Rule, key string) *shard { return e.shards[e.shardIndex(r, key)] }

// shardIndex places (rule, key) with a fixed hash (FNV-1a), so placement
// and the per-shard bounds are the same in every run.
func (e *Engine) shardIndex(r *Rule, key string) int {
	return shardOf(r, key)
}

// shardOf is the shard of rule r's key: a fixed hash of the rule id and
// the key, the same whatever the process.
func shardOf(r *Rule, key string) int {
	h := r.idHash
	if h == 0 {
		h = newKeyHash(0).add(r.Spec.ID)
	}
	return int(h.add(key).sum() % shardCount)
}
