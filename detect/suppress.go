package detect

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// DefaultSuppressFor is how long a single-event rule stays quiet for a key
// after it alerted, unless the rule sets suppress.for.
const DefaultSuppressFor = 10 * time.Minute

// SuppressSpec collapses alert storms of a single-event rule: after the rule
// alerts for a key, its further alerts for that key within For are counted,
// not emitted, and the next alert emitted for the key carries the count.
type SuppressSpec struct {
	// By are expressions whose values form the key; empty means the
	// default key (cluster, user, impersonated user, source address,
	// verb, resource and subresource, namespace, and but for plain reads
	// the object's name).
	By []string `yaml:"by"`
	// For is how long the key stays quiet (default DefaultSuppressFor); 0s
	// turns suppression off for the rule.
	For *Duration `yaml:"for"`
}

// suppression is a rule's compiled SuppressSpec; nil means off.
type suppression struct {
	by     []*program
	period int64
	// rule is the rule id's hash, mixed into keys so that rules do not
	// share them.
	rule uint64
}

// SuppressFor is how long the rule stays quiet for a key after it alerted
// (0: it does not suppress).
func (r *Rule) SuppressFor() time.Duration {
	if r.suppress == nil {
		return 0
	}
	return time.Duration(r.suppress.period)
}

// compileSuppress checks a rule's suppress field and compiles its key
// expressions with compileAny (which reports their errors itself).
func compileSuppress(spec RuleSpec, compileAny func(field, src string) *program) (*suppression, error) {
	s := spec.Suppress
	if spec.Window != nil {
		if s != nil {
			return nil, errors.New("suppress: a window rule has window.cooldown instead")
		}
		return nil, nil
	}
	period := DefaultSuppressFor
	out := &suppression{rule: hashString(spec.ID)}
	if s != nil {
		for i, b := range s.By {
			out.by = append(out.by, compileAny(fmt.Sprintf("suppress.by[%d]", i), b))
		}
		if s.For != nil {
			period = s.For.D()
		}
	}
	if period < 0 {
		return nil, errors.New("suppress.for must not be negative")
	}
	if period == 0 {
		return nil, nil
	}
	out.period = int64(period)
	return out, nil
}

// suppressKey is the key of a single-event alert of rule: the hash of the
// default fields or of the rule's suppress.by values (0: not suppressed).
func (x *evalCtx) suppressKey(rule *Rule) uint64 {
	s := rule.suppress
	if s == nil {
		return 0
	}
	h := newKeyHash(s.rule)
	if len(s.by) == 0 {
		ev := x.ev
		ip := ""
		if len(ev.SourceIPs) > 0 {
			ip = ev.SourceIPs[0]
		}
		for _, f := range [...]string{ev.Cluster, ev.User.Username, ev.ImpersonatedUser.Username, ip, ev.Verb,
			ev.ObjectRef.Resource, ev.ObjectRef.Subresource, ev.ObjectRef.Namespace} {
			h = h.add(f)
		}
		if !plainRead(ev.Verb, ev.ObjectRef.Subresource) {
			// Each object written (or exec'ed into, attached to...) is its
			// own change to review or undo; reading many is the storm.
			h = h.add(ev.ObjectRef.Name)
		}
		return h.sum()
	}
	var one [1]string
	for _, p := range s.by {
		vals, ok := x.values(rule, p, &one)
		if !ok {
			return 0
		}
		for _, v := range vals {
			h = h.add(v)
		}
		h = h.add("\x00")
	}
	return h.sum()
}

// plainRead reports a read of objects themselves: get, list or watch
// without a subresource (exec over WebSockets is a get of pods/exec).
func plainRead(verb, subresource string) bool {
	return subresource == "" && (verb == "get" || verb == "list" || verb == "watch")
}

// keyHash is FNV-1a over fields, each followed by a separator.
type keyHash uint64

func newKeyHash(seed uint64) keyHash { return keyHash(14695981039346656037 ^ seed) }

func (h keyHash) add(s string) keyHash {
	for i := 0; i < len(s); i++ {
		h ^= keyHash(s[i])
		h *= 1099511628211
	}
	h ^= 0xff
	h *= 1099511628211
	return h
}

func (h keyHash) sum() uint64 {
	if h == 0 {
		return 1
	}
	return uint64(h)
}

// suppressor holds the suppression state of single-event rules, bounded
// like window keys. It belongs to the goroutine calling Process.
type suppressor struct {
	max   int
	keys  map[uint64]*suppressState
	swept int64
	m     *engineMetrics
}

// suppressState is one (rule, key). Event time is cut into periods of the
// rule's suppress.for; the first alert of a period goes out, the others
// are counted. Periods, not the time of the alert that went out, decide:
// so a replay and a live stream that delivers the same events in another
// order raise an alert for the same periods, with the same fingerprint.
type suppressState struct {
	Period int64 `json:"period"`
	// P is the newest period with an alert out; bit i of Mask is set when
	// period P-i had its alert (late input may still fall in it).
	P    int64  `json:"p"`
	Mask uint64 `json:"mask"`
	// N alerts were suppressed since the last one out, the first at Since;
	// Last is the newest alert seen.
	N     int   `json:"n,omitempty"`
	Since int64 `json:"since,omitempty"`
	Last  int64 `json:"last"`
}

func newSuppressor(maxKeys int, m *engineMetrics) *suppressor {
	return &suppressor{max: maxKeys, keys: map[uint64]*suppressState{}, m: m}
}

// admit decides whether alert a of rule r goes out. A suppressed alert is
// counted; the next one out for its key carries the count.
func (s *suppressor) admit(r *Rule, key uint64, a *Alert, horizon int64) bool {
	if key == 0 || r.suppress == nil {
		return true
	}
	t := a.Time.UnixNano()
	period := r.suppress.period
	p := floorDiv(t, period)
	// The alert stands for its key's period: the same live or replayed.
	a.Fingerprint = Fingerprint(a.Rule, fmt.Sprintf("suppress:%016x", key), unixUTC(p*period))
	st := s.keys[key]
	if st == nil {
		if len(s.keys) >= s.max {
			s.sweep(horizon)
			if len(s.keys) >= s.max {
				s.evict()
			}
		}
		s.keys[key] = &suppressState{Period: period, P: p, Mask: 1, Last: t}
		return true
	}
	st.Last = max(st.Last, t)
	switch d := st.P - p; {
	case d < 0:
		if st.N > 0 {
			a.Suppressed = st.N
			since := unixUTC(st.Since)
			a.SuppressedSince = &since
		}
		st.Mask = st.Mask<<uint64(-d) | 1 // 0 past 63 periods
		st.P, st.N, st.Since = p, 0, 0
		return true
	case d < 64 && st.Mask>>d&1 == 1:
		if st.N == 0 || t < st.Since {
			st.Since = t
		}
		st.N++
		s.m.alertsSuppressed(r).Inc()
		return false
	case d < 64:
		// Late input, in an earlier period that has had no alert yet.
		st.Mask |= 1 << d
	}
	return true
}

// sweep frees the keys whose period ended with nothing suppressed: they
// would let the next alert through anyway.
func (s *suppressor) sweep(horizon int64) {
	for k, st := range s.keys {
		if st.N == 0 && (st.P+1)*st.Period <= horizon {
			delete(s.keys, k)
		}
	}
}

// evict drops the idlest tenth of the keys.
func (s *suppressor) evict() {
	type kl struct {
		key  uint64
		last int64
	}
	all := make([]kl, 0, len(s.keys))
	for k, st := range s.keys {
		all = append(all, kl{k, st.Last})
	}
	slices.SortFunc(all, func(a, b kl) int { return cmp.Or(cmp.Compare(a.last, b.last), cmp.Compare(a.key, b.key)) })
	n := max(1, len(all)/10)
	for _, e := range all[:n] {
		delete(s.keys, e.key)
	}
	s.m.suppressEvictions.Add(n)
}
