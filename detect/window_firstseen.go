package detect

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// First-seen defaults (docs/first-seen.md).
const (
	DefaultLearning      = 7 * 24 * time.Hour
	DefaultRetention     = 30 * 24 * time.Hour
	DefaultMaxValues     = 64
	DefaultFirstSeenCool = 10 * time.Minute
	// maxMaxValues bounds max_values: a key is scanned on every match.
	maxMaxValues = 10_000
	// baselineDay is the resolution at which a value's last sighting counts
	// as a change worth saving: retention is measured in days.
	baselineDay = int64(24 * time.Hour)
	// baselineSweepEvery is how far event time moves between two sweeps
	// of the baselines nothing was seen in for the retention.
	baselineSweepEvery = int64(time.Hour)
)

// FirstSeenSpec holds the fields of a first_seen window. Each key (window.by:
// a credential, or none for the whole cluster) learns the values of Value it
// shows; once its learning period has passed, a value it has not shown
// within the retention fires the rule.
type FirstSeenSpec struct {
	// Value is the expression whose values a key learns: a user-agent
	// family, a source network, a namespace, a verb and resource.
	Value string `yaml:"value"`
	// AlertIf, when set, limits the matches that may fire: every match
	// teaches its value, but only one for which AlertIf holds alerts.
	AlertIf string `yaml:"alert_if"`
	// Learning is how long after a key's first match its new values are
	// learned without alerting (default DefaultLearning).
	Learning Duration `yaml:"learning"`
	// Retention is how long a value stays known after it was last seen
	// (default DefaultRetention).
	Retention Duration `yaml:"retention"`
	// MaxValues bounds the values a key keeps (default DefaultMaxValues);
	// past it the one seen longest ago is dropped, and reported.
	MaxValues int `yaml:"max_values"`
}

// compileFirstSeen checks a first_seen window and returns it with its
// defaults filled in, and the program that yields a match's value. With
// alert_if the value is prefixed with "+" or "-": whether the match may
// fire. compileAny and compileBool report their own errors and return nil
// on one.
func compileFirstSeen(w *WindowSpec, lists *compiledLists, refs *exprRefs,
	compileAny, compileBool func(field, src string) *program, fail func(string, ...any)) (*WindowSpec, *program) {
	c := *w
	if c.Within != 0 || c.Count != 0 || c.Distinct != "" || len(c.Steps) > 0 {
		fail("window: within, count, distinct and steps are not used by kind first_seen (see learning and retention)")
	}
	if c.Learning < 0 || c.Retention < 0 || c.Cooldown < 0 {
		fail("window.learning, retention and cooldown must not be negative")
	}
	if c.Learning == 0 {
		c.Learning = Duration(DefaultLearning)
	}
	if c.Retention == 0 {
		c.Retention = Duration(DefaultRetention)
	}
	if c.Retention < c.Learning {
		fail("window.retention (%s) must be at least window.learning (%s): values learned would expire before the learning ends",
			c.Retention.D(), c.Learning.D())
	}
	// Alerts of a key are named by the cooldown period they fire in
	// (docs/alerts.md), so a first_seen window always has one.
	if c.Cooldown == 0 {
		c.Cooldown = Duration(DefaultFirstSeenCool)
	}
	switch {
	case c.MaxValues == 0:
		c.MaxValues = DefaultMaxValues
	case c.MaxValues < 0 || c.MaxValues > maxMaxValues:
		fail("window.max_values %d: want 1 to %d", c.MaxValues, maxMaxValues)
	}
	if strings.TrimSpace(c.Value) == "" {
		fail("window.value is required for kind first_seen")
		return &c, nil
	}
	value := compileAny("window.value", c.Value)
	// The window reads the "+" or "-" when alert_if is set.
	c.AlertIf = strings.TrimSpace(c.AlertIf)
	if c.AlertIf == "" || value == nil {
		return &c, value
	}
	if compileBool("window.alert_if", c.AlertIf) == nil {
		return &c, nil
	}
	// The parts compiled alone above; each on its own lines, so that a
	// comment in one cannot swallow the rest. The first form is what a
	// string value needs, and runs without the VM when its parts do; the
	// second formats any other value.
	v, a := "(\n"+c.Value+"\n)", "(\n"+c.AlertIf+"\n)"
	p, err := compileExpr(v+` == "" ? "" : (`+a+` ? "+" : "-") + `+v, lists, refs, false)
	if err != nil {
		p, err = compileExpr("let firstSeenValue = "+v+";\n"+
			`let firstSeenText = firstSeenValue == nil ? "" : string(firstSeenValue);`+"\n"+
			`firstSeenText == "" ? "" : (`+a+` ? "+" : "-") + firstSeenText`, lists, refs, false)
	}
	if err != nil {
		fail("window.value: %v", err)
		return &c, nil
	}
	return &c, p
}

// checkFirstSeenFields reports first_seen fields set on another kind.
func checkFirstSeenFields(w *WindowSpec, fail func(string, ...any)) {
	if w.Kind != WindowFirstSeen && w.FirstSeenSpec != (FirstSeenSpec{}) {
		fail("window: value, alert_if, learning, retention and max_values are only for kind first_seen")
	}
}

// firstSeenWindow is the baseline of one key: the values it showed, each
// with the time it was last seen. It fires on a value the key has not
// shown within the retention, once the learning period after the key's
// first match has passed, and at most once per cooldown.
type firstSeenWindow struct {
	// First is the time of the key's first match (its learning starts),
	// Last of its newest, Fired of its last alert (0: never).
	First, Last, Fired int64
	Values             []seenValue
}

// seenValue is a value with the time it was last seen.
type seenValue struct {
	V string
	T int64
}

func (w *firstSeenWindow) add(m *windowMatch, s *shard) (windowResult, bool) {
	spec := m.rule.Spec.Window
	mayFire, v := true, m.value
	if spec.AlertIf != "" {
		mayFire, v = v != "" && v[0] == '+', v[min(1, len(v)):]
	}
	if v == "" {
		return windowResult{}, false
	}
	fresh := w.First == 0
	if fresh || m.t < w.First {
		w.First = m.t
		s.baselineChanged()
	}
	w.Last = max(w.Last, m.t)
	// Values not seen within the retention before the newest match are
	// forgotten: seen again, they are new.
	if n := len(w.Values); n > 0 {
		cut := w.Last - int64(spec.Retention)
		w.Values = slices.DeleteFunc(w.Values, func(x seenValue) bool { return x.T < cut })
		if len(w.Values) < n {
			s.baselineValues(m.rule).Add(float64(len(w.Values) - n))
			s.baselineChanged()
		}
	}
	for i := range w.Values {
		if x := &w.Values[i]; x.V == v {
			if m.t > x.T {
				// A day's move is a change worth saving: retention
				// counts in days.
				if m.t/baselineDay != x.T/baselineDay {
					s.baselineChanged()
				}
				x.T = m.t
			}
			return windowResult{}, false
		}
	}
	cd := int64(spec.Cooldown)
	fire := mayFire && !fresh && m.t >= w.First+int64(spec.Learning) &&
		(w.Fired == 0 || m.t >= w.Fired+cd || m.t <= w.Fired-cd)
	var res windowResult
	if fire {
		known := make([]string, len(w.Values))
		for i, x := range w.Values {
			known[i] = x.V
		}
		// count: the values the key knows now, the new one included;
		// first: when its baseline began.
		res = windowResult{count: len(w.Values) + 1, first: unixUTC(w.First), last: unixUTC(m.t),
			auditIDs: []string{m.id.String()}, distinct: sortedValues(known, maxAlertDistinct)}
		w.Fired = max(w.Fired, m.t)
	}
	w.learn(v, m.t, spec.MaxValues, s, m)
	return res, fire
}

// learn adds a value; at the bound the value seen longest ago makes room,
// and the drop is reported.
func (w *firstSeenWindow) learn(v string, t int64, maxValues int, s *shard, m *windowMatch) {
	s.baselineChanged()
	if len(w.Values) >= maxValues {
		old := 0
		for i, x := range w.Values {
			if x.T < w.Values[old].T {
				old = i
			}
		}
		w.Values[old] = seenValue{v, t}
		s.valuesDropped(m, 1)
		return
	}
	if len(w.Values) == cap(w.Values) {
		// Grow by hand: append's doubling would pass the bound.
		grown := make([]seenValue, len(w.Values), min(max(2*len(w.Values), 2), maxValues))
		copy(grown, w.Values)
		w.Values = grown
	}
	w.Values = append(w.Values, seenValue{v, t})
	s.baselineValues(m.rule).Inc()
}

func (w *firstSeenWindow) idle(horizon int64, spec *WindowSpec) bool {
	return w.Last < horizon-int64(spec.Retention) && (w.Fired == 0 || w.Fired+int64(spec.Cooldown) <= horizon)
}

func (w *firstSeenWindow) lastSeen() int64 { return w.Last }

// baselineMetrics are a first_seen rule's gauges and counters.
type baselineMetrics struct {
	values  *metrics.Gauge
	dropped *metrics.Counter
}

// baselineMetricsOf returns rule r's metrics, made on first use.
func (s *shard) baselineMetricsOf(r *Rule) *baselineMetrics {
	bm := s.baseline[r]
	if bm == nil {
		l := fmt.Sprintf(`{rule=%q}`, r.Spec.ID)
		bm = &baselineMetrics{values: s.m.set.GetOrCreateGauge("vigil_detect_baseline_values"+l, nil),
			dropped: s.m.set.GetOrCreateCounter("vigil_detect_baseline_values_dropped_total" + l)}
		if s.baseline == nil {
			s.baseline = map[*Rule]*baselineMetrics{}
		}
		s.baseline[r] = bm
	}
	return bm
}

func (s *shard) baselineValues(r *Rule) *metrics.Gauge { return s.baselineMetricsOf(r).values }

// baselineChanged records a change a saved baseline would miss.
func (s *shard) baselineChanged() { s.changes++ }

// valuesDropped records n values of m's key dropped at max_values, for the
// metric and the hourly report.
func (s *shard) valuesDropped(m *windowMatch, n int) {
	s.baselineMetricsOf(m.rule).dropped.Add(n)
	s.evicted = append(s.evicted, evictRef{seq: m.seq, wm: m.wm, rec: m.rec, rule: m.rule, n: evictCount{values: n}})
}

// forget accounts for a key about to be deleted from rule r's table.
func (s *shard) forget(r *Rule, w window) {
	if fw, ok := w.(*firstSeenWindow); ok {
		s.baselineValues(r).Add(float64(-len(fw.Values)))
		s.changes++
	}
}
