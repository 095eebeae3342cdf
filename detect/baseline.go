package detect

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// ErrBadBaseline is returned by LoadBaselines for a file it cannot read:
// not a baselines file, another version, or a line that is not JSON.
var ErrBadBaseline = errors.New("unreadable baselines file")

// The baselines file (docs/first-seen.md): JSON lines, a header and then
// one line per key.
const (
	baselineFormat  = "vigil-baselines"
	baselineVersion = 1
	// maxBaselineLine bounds one line: a key with maxMaxValues long values.
	maxBaselineLine = 64 << 20
)

type baselineHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// EventTime is the newest event time the engine had processed.
	EventTime string                  `json:"eventTime,omitempty"`
	Rules     map[string]baselineRule `json:"rules"`
}

// baselineRule says what a rule's keys and values are: a baseline is
// loaded only into a rule with the same key and value expressions.
type baselineRule struct {
	By    []string `json:"by"`
	Value string   `json:"value"`
	Keys  int      `json:"keys"`
}

type baselineKey struct {
	Rule  string `json:"rule"`
	Key   string `json:"key"`
	First string `json:"first"`
	Last  string `json:"last"`
	Fired string `json:"fired,omitempty"`
	// Values maps each value to the time it was last seen.
	Values map[string]string `json:"values"`
}

func baselineRuleOf(r *Rule) baselineRule {
	by := make([]string, len(r.Spec.Window.By))
	for i, b := range r.Spec.Window.By {
		by[i] = strings.TrimSpace(b)
	}
	return baselineRule{By: by, Value: strings.TrimSpace(r.Spec.Window.Value)}
}

func (a baselineRule) sameAs(b baselineRule) bool {
	return slices.Equal(a.By, b.By) && a.Value == b.Value
}

func formatTime(ns int64) string { return unixUTC(ns).Format(time.RFC3339Nano) }

// SaveBaselines writes the baselines of every first_seen rule: a header,
// then one line per key, in rule and key order. Call it from the goroutine
// that calls Process.
func (e *Engine) SaveBaselines(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	type ruleKeys struct {
		rule *Rule
		keys map[string]*firstSeenWindow
	}
	var rules []ruleKeys
	h := baselineHeader{Format: baselineFormat, Version: baselineVersion, Rules: map[string]baselineRule{}}
	if e.watermark > 0 {
		h.EventTime = formatTime(e.watermark)
	}
	for _, r := range e.rules.Rules {
		if r.Spec.Window == nil || r.Spec.Window.Kind != WindowFirstSeen {
			continue
		}
		rk := ruleKeys{rule: r, keys: map[string]*firstSeenWindow{}}
		for _, sh := range e.shards {
			if t := sh.keys[r]; t != nil {
				for k, w := range t.all() {
					rk.keys[k] = w.(*firstSeenWindow)
				}
			}
		}
		br := baselineRuleOf(r)
		br.Keys = len(rk.keys)
		h.Rules[r.Spec.ID] = br
		rules = append(rules, rk)
	}
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(h); err != nil {
		return fmt.Errorf("write baselines: %w", err)
	}
	slices.SortFunc(rules, func(a, b ruleKeys) int { return strings.Compare(a.rule.Spec.ID, b.rule.Spec.ID) })
	for _, rk := range rules {
		keys := make([]string, 0, len(rk.keys))
		for k := range rk.keys {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			w := rk.keys[k]
			line := baselineKey{Rule: rk.rule.Spec.ID, Key: k, First: formatTime(w.First), Last: formatTime(w.Last),
				Values: make(map[string]string, len(w.Values))}
			if w.Fired != 0 {
				line.Fired = formatTime(w.Fired)
			}
			for _, v := range w.Values {
				line.Values[v.V] = formatTime(v.T)
			}
			if err := enc.Encode(line); err != nil {
				return fmt.Errorf("write baselines: rule %s key %q: %w", rk.rule.Spec.ID, k, err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write baselines: %w", err)
	}
	return nil
}

// LoadBaselines merges a baselines file into the engine: a key already
// there keeps its earliest first time and the newest sighting of each
// value, so loading is idempotent and the file may be older or newer than
// what the engine saw. Baselines of rules that are gone, are not first_seen
// or whose key or value expression changed are dropped, as are keys past
// max_keys_per_rule; the returned error then names them and is
// informational: the rest was loaded. An unreadable file is ErrBadBaseline
// (with the line); what came before that line was loaded. Call it from the
// goroutine that calls Process.
func (e *Engine) LoadBaselines(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxBaselineLine)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return fmt.Errorf("%w: %v", ErrBadBaseline, err)
		}
		return fmt.Errorf("%w: empty", ErrBadBaseline)
	}
	var h baselineHeader
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Format != baselineFormat {
		return fmt.Errorf("%w: line 1: not a header of format %q", ErrBadBaseline, baselineFormat)
	}
	if h.Version != baselineVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrBadBaseline, h.Version, baselineVersion)
	}
	var notes []error
	usable := map[string]*Rule{}
	for _, id := range sortedKeys(h.Rules) {
		saved := h.Rules[id]
		r := e.rules.Rule(id)
		switch {
		case r == nil || r.Spec.Window == nil || r.Spec.Window.Kind != WindowFirstSeen:
			notes = append(notes, fmt.Errorf("rule %s: gone or not first_seen, %d keys dropped", id, saved.Keys))
		case !baselineRuleOf(r).sameAs(saved):
			notes = append(notes, fmt.Errorf("rule %s: its key or value expression changed, %d keys dropped", id, saved.Keys))
		default:
			usable[id] = r
		}
	}
	over := map[string]int{}
	for n := 2; sc.Scan(); n++ {
		var k baselineKey
		if err := json.Unmarshal(sc.Bytes(), &k); err != nil {
			return errors.Join(append(notes, fmt.Errorf("%w: line %d: %v", ErrBadBaseline, n, err))...)
		}
		r := usable[k.Rule]
		if r == nil {
			if _, ok := h.Rules[k.Rule]; !ok {
				return errors.Join(append(notes, fmt.Errorf("%w: line %d: rule %q is not in the header", ErrBadBaseline, n, k.Rule))...)
			}
			continue
		}
		in, err := k.window()
		if err != nil {
			return errors.Join(append(notes, fmt.Errorf("%w: line %d: %v", ErrBadBaseline, n, err))...)
		}
		if !e.mergeBaseline(r, k.Key, in) {
			over[r.Spec.ID]++
		}
	}
	if err := sc.Err(); err != nil {
		return errors.Join(append(notes, fmt.Errorf("%w: %v", ErrBadBaseline, err))...)
	}
	for _, id := range sortedKeys(over) {
		notes = append(notes, fmt.Errorf("rule %s: %d keys past max_keys_per_rule dropped", id, over[id]))
	}
	return errors.Join(notes...)
}

// window reads a key line.
func (k *baselineKey) window() (*firstSeenWindow, error) {
	var w firstSeenWindow
	var err error
	parse := func(s string) int64 {
		if s == "" || err != nil {
			return 0
		}
		t, perr := time.Parse(time.RFC3339Nano, s)
		if perr != nil {
			err = fmt.Errorf("rule %s key %q: %w", k.Rule, k.Key, perr)
		}
		return t.UnixNano()
	}
	w.First, w.Last, w.Fired = parse(k.First), parse(k.Last), parse(k.Fired)
	for v, t := range k.Values {
		w.Values = append(w.Values, seenValue{V: v, T: parse(t)})
	}
	if err == nil && (w.First == 0 || w.Last < w.First) {
		err = fmt.Errorf("rule %s key %q: want first <= last", k.Rule, k.Key)
	}
	return &w, err
}

// mergeBaseline merges a loaded key into rule r's table; false when the key
// is new and its shard holds max_keys_per_rule keys already.
func (e *Engine) mergeBaseline(r *Rule, key string, in *firstSeenWindow) bool {
	sh := e.shardFor(r, key)
	t := sh.table(r)
	var w *firstSeenWindow
	if cur := t.get(key); cur != nil {
		w = cur.(*firstSeenWindow)
	} else {
		if t.size() >= sh.maxKeys {
			return false
		}
		w = t.add(key).(*firstSeenWindow)
		e.m.keys(r).Inc()
	}
	before := len(w.Values)
	if w.First == 0 || in.First < w.First {
		w.First = in.First
	}
	w.Last, w.Fired = max(w.Last, in.Last), max(w.Fired, in.Fired)
	for _, x := range in.Values {
		i := slices.IndexFunc(w.Values, func(y seenValue) bool { return y.V == x.V })
		if i >= 0 {
			w.Values[i].T = max(w.Values[i].T, x.T)
		} else {
			w.Values = append(w.Values, x)
		}
	}
	spec := r.Spec.Window
	cut := w.Last - int64(spec.Retention)
	w.Values = slices.DeleteFunc(w.Values, func(x seenValue) bool { return x.T < cut })
	if len(w.Values) > spec.MaxValues {
		// The bound may have been lowered since: keep the newest.
		slices.SortFunc(w.Values, func(a, b seenValue) int { return cmp.Compare(b.T, a.T) })
		w.Values = slices.Clip(w.Values[:spec.MaxValues])
	}
	sh.baselineValues(r).Add(float64(len(w.Values) - before))
	return true
}

// BaselinesChanged reports whether the baselines changed in a way a saved
// file would miss since the last BaselinesSaved (or since the engine
// started). Call it from the goroutine that calls Process.
func (e *Engine) BaselinesChanged() bool {
	for _, sh := range e.shards {
		if sh.changes != sh.savedChanges {
			return true
		}
	}
	return false
}

// BaselinesSaved records that what SaveBaselines wrote last is stored:
// BaselinesChanged is false until the baselines change again.
func (e *Engine) BaselinesSaved() {
	for _, sh := range e.shards {
		sh.savedChanges = sh.changes
	}
}

// PendingAlerts is the number of alerts raised but not yet handed to Emit
// (it failed). Baselines saved while some are pending would hold the values
// of alerts that a restart cannot raise again.
func (e *Engine) PendingAlerts() int { return len(e.unsent) }
