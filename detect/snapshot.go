package detect

import (
	"container/heap"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"

	"github.com/vigil-k8s/vigil/ingest"
)

// ErrBadSnapshot is returned by Restore for a snapshot it cannot read at
// all; nothing was restored. Other Restore errors name state that was
// dropped while the rest was restored.
var ErrBadSnapshot = errors.New("unreadable window snapshot")

// snapshotVersion is bumped when the format changes incompatibly.
const snapshotVersion = 1

// snapshot is the serialized window state of an engine.
type snapshot struct {
	Version   int                                   `json:"version"`
	Watermark int64                                 `json:"watermark"`
	Seq       uint64                                `json:"seq"`
	RawRules  map[string]map[string]json.RawMessage `json:"rules"`
	// Shapes records each rule's window kind and step count: state of a
	// rule whose window changed since is dropped, never misread.
	Shapes  map[string]windowShape `json:"shapes"`
	Pending []pendingMatch         `json:"pending"`
}

type windowShape struct {
	Kind  WindowKind `json:"kind"`
	Steps int        `json:"steps,omitempty"`
}

func shapeOf(r *Rule) windowShape {
	return windowShape{Kind: r.Spec.Window.Kind, Steps: len(r.Spec.Window.Steps)}
}

// pendingMatch is a buffered match with its event, re-decoded on restore.
type pendingMatch struct {
	Rule  string          `json:"rule"`
	Key   string          `json:"key"`
	Step  int             `json:"step"`
	Value string          `json:"value,omitempty"`
	Seq   uint64          `json:"seq"`
	Event json.RawMessage `json:"event"`
}

// Snapshot writes the window state (keys, cooldowns and the matches still
// buffered for ordering) as JSON, so a restarted engine continues where this
// one stopped. Call it from the goroutine that calls Process.
func (e *Engine) Snapshot(w io.Writer) error {
	s := snapshot{Version: snapshotVersion, Watermark: e.watermark, Seq: e.seq,
		RawRules: map[string]map[string]json.RawMessage{}, Shapes: map[string]windowShape{}}
	for _, r := range e.rules.Rules {
		if r.Spec.Window != nil {
			s.Shapes[r.Spec.ID] = shapeOf(r)
		}
	}
	for _, sh := range e.shards {
		for r, keys := range sh.keys {
			out := s.RawRules[r.Spec.ID]
			if out == nil {
				out = map[string]json.RawMessage{}
				s.RawRules[r.Spec.ID] = out
			}
			for k, win := range keys {
				b, err := json.Marshal(win)
				if err != nil {
					return fmt.Errorf("snapshot rule %s: %w", r.Spec.ID, err)
				}
				out[k] = b
			}
		}
		for _, m := range sh.pending {
			ev, err := json.Marshal(m.ev)
			if err != nil {
				return fmt.Errorf("snapshot pending match of %s: %w", m.rule.Spec.ID, err)
			}
			s.Pending = append(s.Pending, pendingMatch{Rule: m.rule.Spec.ID, Key: m.key, Step: m.step,
				Value: m.value, Seq: m.seq, Event: ev})
		}
	}
	enc := json.NewEncoder(w)
	if err := enc.Encode(&s); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// Restore loads a snapshot into a fresh engine. State of rules that no
// longer exist, or whose window kind changed, is dropped (and counted in
// the returned error, which is informational: the rest is restored).
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
	// same returns the rule if its window has the shape it had when the
	// snapshot was taken.
	same := func(id string) *Rule {
		rule := e.rules.Rule(id)
		if rule == nil || rule.Spec.Window == nil || s.Shapes[id] != shapeOf(rule) {
			return nil
		}
		return rule
	}
	for id, keys := range s.RawRules {
		rule := same(id)
		if rule == nil {
			dropped = append(dropped, fmt.Errorf("rule %s: gone or its window changed, %d keys dropped", id, len(keys)))
			continue
		}
		for k, raw := range keys {
			win := newWindow(rule.Spec.Window.Kind)
			if err := json.Unmarshal(raw, win); err != nil {
				dropped = append(dropped, fmt.Errorf("rule %s key %q: %w", id, k, err))
				continue
			}
			sh := e.shardFor(rule, k)
			if sh.keys[rule] == nil {
				sh.keys[rule] = map[string]window{}
			}
			sh.keys[rule][k] = win
			e.m.windowKeys.Inc()
		}
	}
	dec := ingest.Decoder{Annotations: true, Extra: true}
	for _, p := range s.Pending {
		rule := same(p.Rule)
		if rule == nil {
			dropped = append(dropped, fmt.Errorf("rule %s: gone or its window changed, pending match dropped", p.Rule))
			continue
		}
		ev, err := dec.Decode(p.Event)
		if err != nil {
			dropped = append(dropped, fmt.Errorf("rule %s: pending event: %w", p.Rule, err))
			continue
		}
		ev.LoadObjects()
		m := &windowMatch{rule: rule, ev: ev.Clone(), t: ev.Time().UnixNano(), seq: p.Seq, key: p.Key, step: p.Step, value: p.Value}
		sh := e.shardFor(rule, p.Key)
		sh.pending = append(sh.pending, m)
	}
	for _, sh := range e.shards {
		heap.Init(&sh.pending)
	}
	return errors.Join(dropped...)
}

// shardFor returns the shard that owns (rule, key).
func (e *Engine) shardFor(r *Rule, key string) *shard { return e.shards[e.shardIndex(r, key)] }

// shardIndex places (rule, key) with a fixed hash (FNV-1a), so placement
// and the per-shard bounds are the same in every run.
func (e *Engine) shardIndex(r *Rule, key string) int {
	h := fnv.New64a()
	h.Write([]byte(r.Spec.ID))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return int(h.Sum64() % uint64(len(e.shards)))
}
