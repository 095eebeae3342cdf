package detect

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/ingest"
)

const firstSeenRules = `
rules:
- id: sa-new-agent
  title: service account from a new client
  severity: medium
  audit: {level: Metadata, resources: [{group: "*", resources: ["*"]}]}
  match: user.username startsWith "system:serviceaccount:"
  window: {kind: first_seen, by: [user.username], value: uaFamily(userAgent)}
  output: "first {{ uaFamily .userAgent }} for {{ .key }} in {{ elapsed .first .last }}; known: {{ join .distinct \", \" }}"
- id: secrets-new-namespace
  title: secrets read in a namespace never touched
  severity: medium
  audit: {level: Metadata, resources: [{group: "*", resources: ["*"]}]}
  match: objectRef.namespace != ""
  window:
    kind: first_seen
    by: [user.username]
    value: objectRef.namespace
    alert_if: objectRef.resource == "secrets"
    learning: 2d
    retention: 10d
    max_values: 3
    cooldown: 1m
`

// day is the start of day n (1-based) after t0.
func day(n int) time.Time { return t0.Add(time.Duration(n-1) * 24 * time.Hour) }

// fsEvent is a request of user with a user agent, on a resource in a
// namespace, at t.
func fsEvent(id string, at time.Time, user, agent, resource, ns string) []byte {
	return ev(id, at.Sub(t0).Seconds(), user, "get", resource, 200,
		"userAgent", agent, "objectRef", fmt.Sprintf(`{"resource":%q,"namespace":%q,"name":"x"}`, resource, ns))
}

const (
	sa      = "system:serviceaccount:ci:deployer"
	kubectl = "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0"
	python  = "python-requests/2.31.0"
)

// collect runs batches through one engine and returns its alerts.
func collect(t *testing.T, e *Engine, alerts *[]Alert, batches ...[][]byte) {
	t.Helper()
	for _, b := range batches {
		recs := make([]ingest.Record, len(b))
		for i := range b {
			recs[i] = ingest.Record{Data: b[i]}
		}
		if err := e.Process(context.Background(), ingest.Batch{Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func newCollecting(t *testing.T, o Options) (*Engine, *[]Alert) {
	t.Helper()
	var alerts []Alert
	o.Emit = func(a Alert) error { alerts = append(alerts, a); return nil }
	e, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return e, &alerts
}

func describeAlerts(as []Alert) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, fmt.Sprintf("%s %s %s", a.Rule, a.Time.Format("01-02T15:04"), a.Message))
	}
	return out
}

func TestFirstSeen(t *testing.T) {
	rs := compileTestRules(t, firstSeenRules)
	cases := []struct {
		name   string
		events [][]byte
		want   []string
	}{
		{"a new client after the learning period",
			[][]byte{fsEvent("a", day(1), sa, kubectl, "pods", ""), fsEvent("b", day(9), sa, python, "pods", "")},
			[]string{"sa-new-agent 11-30T06:00 first python-requests for " + sa + " in 8 days; known: kubectl"}},
		{"learning",
			[][]byte{fsEvent("a", day(1), sa, kubectl, "pods", ""), fsEvent("b", day(2), sa, python, "pods", ""),
				fsEvent("c", day(9), sa, python, "pods", "")},
			nil},
		{"another version of a known client",
			[][]byte{fsEvent("a", day(1), sa, "kubectl/v1.32.1 (linux/amd64) kubernetes/abc1234", "pods", ""),
				fsEvent("b", day(9), sa, kubectl, "pods", "")},
			nil},
		{"each key learns on its own",
			[][]byte{fsEvent("a", day(1), sa, kubectl, "pods", ""),
				fsEvent("b", day(9), "system:serviceaccount:ci:other", python, "pods", "")},
			nil},
		{"a value not seen within the retention is new again",
			[][]byte{fsEvent("a", day(1), "u", kubectl, "pods", "team-a"), fsEvent("b", day(5), "u", kubectl, "pods", "team-b"),
				fsEvent("c", day(14), "u", kubectl, "secrets", "team-b"), fsEvent("d", day(14), "u", kubectl, "secrets", "team-a")},
			[]string{"secrets-new-namespace 12-05T06:00 secrets read in a namespace never touched"}},
		{"alert_if: touching a namespace teaches it, reading secrets there later is known",
			[][]byte{fsEvent("a", day(1), "u", kubectl, "pods", "team-a"), fsEvent("b", day(4), "u", kubectl, "configmaps", "team-b"),
				fsEvent("c", day(5), "u", kubectl, "secrets", "team-b"), fsEvent("d", day(5), "u", kubectl, "secrets", "kube-system")},
			[]string{"secrets-new-namespace 11-26T06:00 secrets read in a namespace never touched"}},
		{"cooldown: one alert per key per cooldown",
			[][]byte{fsEvent("a", day(1), "u", kubectl, "pods", "team-a"),
				fsEvent("b", day(5), "u", kubectl, "secrets", "x"), fsEvent("c", day(5).Add(30*time.Second), "u", kubectl, "secrets", "y"),
				fsEvent("d", day(5).Add(2*time.Minute), "u", kubectl, "secrets", "z")},
			[]string{"secrets-new-namespace 11-26T06:00 secrets read in a namespace never touched",
				"secrets-new-namespace 11-26T06:02 secrets read in a namespace never touched"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, alerts := newCollecting(t, Options{Rules: rs, Workers: 2})
			collect(t, e, alerts, c.events)
			var got []string
			for _, s := range describeAlerts(*alerts) {
				if !strings.HasPrefix(s, ValuesDroppedRule) {
					got = append(got, s)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
		})
	}
}

// TestFirstSeen_Alert checks what the alert carries: the baseline's start,
// the values known before and how many the key knows now.
func TestFirstSeen_Alert(t *testing.T) {
	rs := compileTestRules(t, firstSeenRules).Subset("sa-new-agent")
	e, alerts := newCollecting(t, Options{Rules: rs})
	collect(t, e, alerts, [][]byte{fsEvent("a", day(1), sa, kubectl, "pods", ""),
		fsEvent("b", day(2), sa, "Helm/3.15.2", "pods", ""), fsEvent("c", day(10), sa, python, "pods", ""),
		fsEvent("d", day(10).Add(time.Hour), sa, python, "pods", "")})
	if len(*alerts) != 1 {
		t.Fatalf("got %d alerts, want 1: %v", len(*alerts), describeAlerts(*alerts))
	}
	a := (*alerts)[0]
	if !a.FirstTime.Equal(day(1)) || !a.LastTime.Equal(day(10)) || a.Count != 3 ||
		!slices.Equal(a.Distinct, []string{"helm", "kubectl"}) || !slices.Equal(a.AuditIDs, []string{"c"}) || a.GroupKey != sa {
		t.Errorf("alert = first %v last %v count %d distinct %v auditIDs %v key %q", a.FirstTime, a.LastTime, a.Count, a.Distinct, a.AuditIDs, a.GroupKey)
	}
	// Named by the cooldown period it fired in, like every window with one.
	if want := Fingerprint(a.Rule, sa, day(10)); a.Fingerprint != want {
		t.Errorf("fingerprint %s, want %s", a.Fingerprint, want)
	}
}

// TestFirstSeen_ArrivalOrder: within the lateness, the order of arrival,
// the batch size and the worker count do not change which keys alert.
func TestFirstSeen_ArrivalOrder(t *testing.T) {
	rs := compileTestRules(t, firstSeenRules)
	var evs [][]byte
	for i := range 40 {
		evs = append(evs, fsEvent(fmt.Sprintf("l%d", i), day(1).Add(time.Duration(i)*time.Hour), fmt.Sprintf("system:serviceaccount:ns:sa%d", i%5), kubectl, "pods", "team-a"))
	}
	for i := range 20 {
		agent := python
		if i%2 == 0 {
			agent = "curl/8.5.0"
		}
		evs = append(evs, fsEvent(fmt.Sprintf("n%d", i), day(10).Add(time.Duration(i)*time.Second), fmt.Sprintf("system:serviceaccount:ns:sa%d", i%5), agent, "secrets", fmt.Sprintf("ns%d", i%4)))
	}
	keys := func(as []Alert) []string {
		var out []string
		for _, a := range as {
			out = append(out, a.Rule+" "+a.GroupKey)
		}
		slices.Sort(out)
		return out
	}
	e, alerts := newCollecting(t, Options{Rules: rs, Workers: 1})
	collect(t, e, alerts, evs)
	want := keys(*alerts)
	if len(want) == 0 {
		t.Fatal("no alerts")
	}
	// The day-10 events reversed (10 seconds apart at most) in batches of 3.
	late := slices.Clone(evs[40:])
	slices.Reverse(late)
	var batches [][][]byte
	all := append(slices.Clone(evs[:40]), late...)
	for i := 0; i < len(all); i += 3 {
		batches = append(batches, all[i:min(i+3, len(all))])
	}
	e2, alerts2 := newCollecting(t, Options{Rules: rs, Workers: 3})
	collect(t, e2, alerts2, batches...)
	if got := keys(*alerts2); !slices.Equal(got, want) {
		t.Errorf("out of order: %v, in order: %v", got, want)
	}
}

// TestFirstSeen_Bounds: a key at max_values drops the value seen longest
// ago and says so once an hour; rule keys at max_keys_per_rule are evicted
// and reported as for every window.
func TestFirstSeen_Bounds(t *testing.T) {
	rs := compileTestRules(t, firstSeenRules).Subset("secrets-new-namespace")
	set := metrics.NewSet()
	e, alerts := newCollecting(t, Options{Rules: rs, Metrics: set, MaxKeysPerRule: 16})
	var evs [][]byte
	for i := range 6 {
		evs = append(evs, fsEvent(fmt.Sprintf("v%d", i), day(1).Add(time.Duration(i)*time.Minute), "u", kubectl, "pods", fmt.Sprintf("ns%d", i)))
	}
	// 40 users on 16 keys: the idlest are evicted (per shard of 1 key).
	for i := range 40 {
		evs = append(evs, fsEvent(fmt.Sprintf("k%d", i), day(1).Add(time.Hour+time.Duration(i)*time.Second), fmt.Sprintf("user%d", i), kubectl, "pods", "a"))
	}
	collect(t, e, alerts, evs)
	var dropped, evicted *Alert
	for i, a := range *alerts {
		switch a.Rule {
		case ValuesDroppedRule:
			dropped = &(*alerts)[i]
		case EvictedRule:
			evicted = &(*alerts)[i]
		}
	}
	if dropped == nil || dropped.Severity != SeverityLow || dropped.Count != 1 ||
		dropped.Message != "rule secrets-new-namespace reached its bound of 3 values per key: 1 values dropped" {
		t.Errorf("values-dropped alert = %+v", dropped)
	}
	if evicted == nil || evicted.GroupKey != "secrets-new-namespace" {
		t.Errorf("no eviction alert: %v", describeAlerts(*alerts))
	}
	l := `{rule="secrets-new-namespace"}`
	if n := set.GetOrCreateCounter("vigil_detect_baseline_values_dropped_total" + l).Get(); n != 3 {
		t.Errorf("values dropped metric = %d, want 3", n)
	}
	if n := set.GetOrCreateCounter("vigil_detect_window_evictions_total" + l).Get(); n == 0 {
		t.Error("no key evictions counted")
	}
	keys := set.GetOrCreateGauge("vigil_detect_window_keys"+l, nil).Get()
	values := set.GetOrCreateGauge("vigil_detect_baseline_values"+l, nil).Get()
	if keys < 1 || keys > 16 || values < keys || values > 3*keys {
		t.Errorf("gauges: %v keys, %v values", keys, values)
	}
}

func TestFirstSeen_CompileErrors(t *testing.T) {
	cases := []struct{ window, want string }{
		{`{kind: first_seen, by: [user.username]}`, "window.value is required"},
		{`{kind: first_seen, value: userAgent, within: 1m}`, "not used by kind first_seen"},
		{`{kind: first_seen, value: userAgent, learning: 10d, retention: 3d}`, "must be at least window.learning"},
		{`{kind: first_seen, value: userAgent, max_values: -1}`, "window.max_values -1"},
		{`{kind: first_seen, value: nosuchfield}`, "window.value"},
		{`{kind: first_seen, value: userAgent, alert_if: userAgent}`, "window.alert_if"},
		{`{kind: threshold, by: [user.username], within: 1m, count: 2, value: userAgent}`, "only for kind first_seen"},
		{`{kind: first_seen, value: userAgent, learning: 7x}`, "bad duration"},
	}
	for _, c := range cases {
		src := "rules:\n- id: r\n  title: r\n  severity: low\n  audit: {level: Metadata}\n  match: verb != \"\"\n  window: " + c.window + "\n"
		cat, err := ParseRuleFile("t.yaml", []byte(src))
		if err == nil {
			_, err = Compile(cat)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.window, err, c.want)
		}
	}
	ok := "rules:\n- id: r\n  title: r\n  severity: low\n  audit: {level: Metadata}\n  match: verb != \"\"\n  window: {kind: first_seen, value: userAgent, learning: 3d}\n"
	cat, err := ParseRuleFile("t.yaml", []byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	w := rs.Rules[0].Spec.Window
	if w.Learning.D() != 72*time.Hour || w.Retention.D() != DefaultRetention || w.MaxValues != DefaultMaxValues || w.Cooldown.D() != DefaultFirstSeenCool {
		t.Errorf("defaults: %+v", w)
	}
	if cat.Rules[0].Window.Cooldown != 0 {
		t.Error("Compile changed the catalog's window")
	}
}

func TestElapsed(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{{12*24*time.Hour + 5*time.Hour, "12 days"}, {24 * time.Hour, "1 day"}, {5 * time.Hour, "5 hours"}, {90 * time.Second, "1 minute"}, {0, "0 seconds"}} {
		if got := elapsed(t0, t0.Add(c.d)); got != c.want {
			t.Errorf("elapsed(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}
