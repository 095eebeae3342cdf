package detect

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/ingest"
)

// TestWindows_FireOnArrival checks that a window fires in the Process call
// of the event that completes it, with no later event and no Flush, and
// that an event older than the watermark by more than the lateness is
// counted as late and not applied.
func TestWindows_FireOnArrival(t *testing.T) {
	rs := compileTestRules(t, windowRules)
	var got []string
	set := metrics.NewSet()
	e, err := New(Options{Rules: rs, Workers: 2, Metrics: set, Emit: func(a Alert) error {
		got = append(got, fmt.Sprintf("%s %s %d", a.Rule, a.GroupKey, a.Count))
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	process := func(evs ...[]byte) {
		t.Helper()
		recs := make([]ingest.Record, len(evs))
		for i := range evs {
			recs[i] = ingest.Record{Data: evs[i]}
		}
		if err := e.Process(context.Background(), ingest.Batch{Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	process(ev("a", 0, "eve", "get", "pods", 403), ev("b", 10, "eve", "get", "pods", 403))
	if len(got) != 0 {
		t.Fatalf("alerts before the window is complete: %v", got)
	}
	process(ev("c", 20, "eve", "get", "pods", 403))
	if !slices.Equal(got, []string{"burst eve 3"}) {
		t.Fatalf("after the third match: %v, want the alert at once", got)
	}
	// Far ahead, then two matches behind the watermark by more than the
	// lateness: late, not applied.
	process(ev("x", 1000, "bob", "get", "pods", 200))
	process(ev("d", 600, "zed", "get", "pods", 403), ev("e", 601, "zed", "get", "pods", 403), ev("f", 999, "zed", "get", "pods", 403))
	if late := set.GetOrCreateCounter("vigil_detect_late_events_total").Get(); late != 2 {
		t.Errorf("late events = %d, want 2", late)
	}
	if len(got) != 1 {
		t.Errorf("late matches raised %v", got[1:])
	}
}

// arrival is an event with the wall time it reaches vigil.
type arrival struct {
	data []byte
	at   float64
}

// TestWindows_LiveMatchesReplay runs the same events twice: in event-time
// order, as a replay of a sorted log does, and in the order a live stream
// delivers them, each late by up to 40s (within the lateness), cut in
// batches of several sizes. Both must raise the same alerts: the same rule
// and key, in the same cooldown period.
func TestWindows_LiveMatchesReplay(t *testing.T) {
	rs := compileTestRules(t, windowRules+`
- id: burst-wide
  title: many 403 from one address
  severity: medium
  audit: {level: Metadata}
  match: responseStatus.code == 403
  window: {kind: threshold, by: ["sourceIPs[0]"], within: 1m, count: 80, cooldown: 5m}
`)
	binding := func(id string, sec float64, name string) []byte {
		return ev(id, sec, "root", "create", "clusterrolebindings", 201, "requestObject",
			fmt.Sprintf(`{"roleRef":{"name":"cluster-admin"},"subjects":[{"kind":"User","name":%q}]}`, name))
	}
	rng := rand.New(rand.NewPCG(7, 7))
	var evs []arrival
	add := func(data []byte, sec float64) {
		evs = append(evs, arrival{data, sec + rng.Float64()*40})
	}
	// Bursts of one user every 20 minutes (apart by more than any window
	// and cooldown), with background noise.
	for burst := range 6 {
		base := float64(burst) * 1200
		user := fmt.Sprintf("user%d", burst%3)
		for i := range 90 {
			sec := base + float64(i)*0.5
			add(ev(fmt.Sprintf("f%d-%d", burst, i), sec, user, "get", "pods", 403, "sourceIPs", `["10.0.0.9"]`), sec)
		}
		for i := range 4 {
			sec := base + 100 + float64(i)*5
			add(ev(fmt.Sprintf("s%d-%d", burst, i), sec, user, "get", "secrets", 200), sec)
		}
		add(binding(fmt.Sprintf("g%d", burst), base+300, user), base+300)
		add(ev(fmt.Sprintf("u%d", burst), base+330, user, "list", "secrets", 200), base+330)
		for i := range 30 {
			sec := base + float64(i)*30
			add(ev(fmt.Sprintf("n%d-%d", burst, i), sec, fmt.Sprintf("bg%d", i), "get", "pods", 200), sec)
		}
	}
	byTime := slices.Clone(evs)
	slices.SortStableFunc(byTime, func(a, b arrival) int { return cmp.Compare(eventSec(a.data), eventSec(b.data)) })
	live := slices.Clone(evs)
	slices.SortStableFunc(live, func(a, b arrival) int { return cmp.Compare(a.at, b.at) })

	run := func(order []arrival, size int) []Alert {
		var out []Alert
		e, err := New(Options{Rules: rs, Workers: 2, Emit: func(a Alert) error { out = append(out, a); return nil }})
		if err != nil {
			t.Fatal(err)
		}
		for lo := 0; lo < len(order); lo += size {
			var recs []ingest.Record
			for _, a := range order[lo:min(lo+size, len(order))] {
				recs = append(recs, ingest.Record{Data: a.data})
			}
			if err := e.Process(context.Background(), ingest.Batch{Records: recs}); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		return out
	}
	replay := run(byTime, 4096)
	if len(replay) < 4*6 {
		t.Fatalf("replay raised %d alerts, want every burst to fire the four rules: %v", len(replay), summary(replay))
	}
	for _, size := range []int{1, 13, 500} {
		got := run(live, size)
		if err := samePeriods(replay, got, rs); err != nil {
			t.Errorf("live, batches of %d: %v\nreplay: %v\nlive:   %v", size, err, summary(replay), summary(got))
		}
	}
}

func eventSec(data []byte) float64 {
	var e ingest.Decoder
	ev, _ := e.Decode(data)
	return ev.Time().Sub(t0).Seconds()
}

func summary(as []Alert) []string {
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("%s/%s@%s", a.Rule, a.GroupKey, a.Time.Sub(t0)))
	}
	return out
}

// samePeriods checks that two runs raised, per rule and key, as many alerts,
// each within the cooldown (or window) of its counterpart.
func samePeriods(want, got []Alert, rs *RuleSet) error {
	group := func(as []Alert) map[string][]time.Time {
		m := map[string][]time.Time{}
		for _, a := range as {
			k := a.Rule + " " + a.GroupKey
			m[k] = append(m[k], a.Time)
		}
		for _, ts := range m {
			slices.SortFunc(ts, time.Time.Compare)
		}
		return m
	}
	w, g := group(want), group(got)
	var errs []string
	for k, wt := range w {
		gt := g[k]
		if len(gt) != len(wt) {
			errs = append(errs, fmt.Sprintf("%s: %d alerts, want %d", k, len(gt), len(wt)))
			continue
		}
		spec := rs.Rule(strings.Fields(k)[0]).Spec.Window
		period := max(time.Duration(spec.Cooldown), time.Duration(spec.Within))
		for i := range wt {
			if d := gt[i].Sub(wt[i]); d >= period || d <= -period {
				errs = append(errs, fmt.Sprintf("%s: alert %d at %s, want within %s of %s", k, i, gt[i].Sub(t0), period, wt[i].Sub(t0)))
			}
		}
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			errs = append(errs, fmt.Sprintf("%s: not raised by the replay", k))
		}
	}
	slices.Sort(errs)
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// TestWindows_CountsAndSketches pins the forms of state that do not keep
// every match: threshold counts in buckets past exactThreshold, distinct
// values past the exactness cap in a sketch.
func TestWindows_CountsAndSketches(t *testing.T) {
	rs := compileTestRules(t, `
rules:
- id: wide
  title: wide
  severity: high
  audit: {level: Metadata}
  match: responseStatus.code == 403
  window: {kind: threshold, by: [user.username], within: 1m, count: 100}
- id: many
  title: many
  severity: high
  audit: {level: Metadata}
  match: objectRef.resource == "secrets"
  window: {kind: distinct, by: [user.username], distinct: objectRef.name, within: 5m, count: 200}
`)
	var forbidden, secrets [][]byte
	for i := range 300 {
		forbidden = append(forbidden, ev(fmt.Sprintf("f%d", i), float64(i)*0.5, "eve", "get", "pods", 403))
		secrets = append(secrets, ev(fmt.Sprintf("s%d", i), float64(i), "eve", "get", "secrets", 200))
	}
	cases := []struct {
		name   string
		events [][]byte
		want   []string
	}{
		{"buckets: 99 in a minute", forbidden[:99], nil},
		{"buckets: 100 in a minute", forbidden[:100], []string{"wide eve 100"}},
		{"buckets: 100 spread over 2 minutes", everyOther(forbidden[:200]), nil},
		{"sketch: 150 distinct", secrets[:150], nil},
		{"sketch: 260 distinct", secrets[:260], []string{"many eve"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			e, _ := New(Options{Rules: rs, Workers: 1, DistinctExact: 20, Emit: func(a Alert) error {
				s := a.Rule + " " + a.GroupKey
				if a.Rule == "wide" {
					s += fmt.Sprint(" ", a.Count)
				} else if a.Count < 180 || a.Count > 220 || len(a.Distinct) != 20 {
					t.Errorf("sketch alert counts %d values and lists %d: want about 200 and the 20 kept", a.Count, len(a.Distinct))
				}
				got = append(got, s)
				return nil
			}})
			recs := make([]ingest.Record, len(c.events))
			for i := range c.events {
				recs[i] = ingest.Record{Data: c.events[i]}
			}
			if err := e.Process(context.Background(), ingest.Batch{Records: recs}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func everyOther(evs [][]byte) [][]byte {
	var out [][]byte
	for i := 0; i < len(evs); i += 2 {
		out = append(out, evs[i])
	}
	return out
}

// TestEngine_EvictionAlert fills a rule's keys past its bound: the idlest
// are evicted and counted, one low-severity alert per rule per hour names
// the rule, the bound and how many were evicted, and a burst amid the
// flood still fires.
func TestEngine_EvictionAlert(t *testing.T) {
	rs := compileTestRules(t, windowRules)
	var got []Alert
	set := metrics.NewSet()
	e, _ := New(Options{Rules: rs.Subset("burst"), Workers: 2, MaxKeysPerRule: 160, Metrics: set,
		Emit: func(a Alert) error { got = append(got, a); return nil }})
	var recs []ingest.Record
	for i := range 1000 {
		recs = append(recs, ingest.Record{Data: ev(fmt.Sprintf("e%d", i), float64(i)/10, fmt.Sprintf("user%d", i), "get", "pods", 403)})
		if i >= 500 && i < 503 {
			// A burst amid the flood: its key is among the kept.
			recs = append(recs, ingest.Record{Data: ev(fmt.Sprintf("m%d", i), float64(i)/10, "mallory", "get", "pods", 403)})
		}
	}
	// An hour later, more: a second report.
	for i := range 1000 {
		recs = append(recs, ingest.Record{Data: ev(fmt.Sprintf("l%d", i), 4000+float64(i)/10, fmt.Sprintf("later%d", i), "get", "pods", 403)})
	}
	if err := e.Process(context.Background(), ingest.Batch{Records: recs}); err != nil {
		t.Fatal(err)
	}
	evicted := set.GetOrCreateCounter(`vigil_detect_window_evictions_total{rule="burst"}`).Get()
	if evicted == 0 {
		t.Fatal("no key evicted")
	}
	var reports []Alert
	bursts := 0
	for _, a := range got {
		if a.Rule == "burst" && a.GroupKey == "mallory" {
			bursts++
		} else {
			reports = append(reports, a)
		}
	}
	if bursts != 1 || len(reports) != 2 {
		t.Fatalf("got %v, want the burst once and 2 eviction reports", summary(got))
	}
	got = reports
	total := 0
	for _, a := range got {
		total += a.Count
		if a.Rule != EvictedRule || a.Severity != SeverityLow || a.GroupKey != "burst" ||
			!strings.Contains(a.Message, "rule burst") || !strings.Contains(a.Message, "bound of 160") {
			t.Errorf("eviction alert: %+v", a)
		}
	}
	if got[1].Time.Sub(got[0].Time) < time.Hour {
		t.Errorf("two reports %s apart, want an hour at least", got[1].Time.Sub(got[0].Time))
	}
	// What the second report does not cover is told once its hour passed.
	if err := e.Advance(context.Background(), got[1].Time.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, a := range got[2:] {
		total += a.Count
	}
	if uint64(total) != evicted {
		t.Errorf("reports count %d evicted keys, the metric %d", total, evicted)
	}
}
