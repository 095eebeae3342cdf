package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/ingest"
)

const windowRules = `
lists:
  admins: [root]
rules:
- id: burst
  title: burst
  severity: high
  audit: {level: Metadata, resources: [{group: "", resources: [pods]}]}
  match: responseStatus.code == 403
  window: {kind: threshold, by: [user.username], within: 1m, count: 3, cooldown: 5m}
  output: "{{ .user.username }} {{ .count }}"
- id: enum
  title: enum
  severity: high
  audit: {level: Metadata, resources: [{group: "", resources: [secrets]}]}
  match: objectRef.resource == "secrets" && verb == "get"
  window: {kind: distinct, by: [user.username], distinct: objectRef.namespace + "/" + objectRef.name, within: 1m, count: 3}
- id: grant-use
  title: grant then use
  severity: critical
  audit: {level: Request, resources: [{group: rbac.authorization.k8s.io, resources: [clusterrolebindings]}]}
  window:
    kind: sequence
    within: 2m
    steps:
    - {name: grant, match: 'objectRef.resource == "clusterrolebindings" && verb == "create"', by: ['subjects(requestObject)']}
    - {name: use, match: 'objectRef.resource == "secrets" && verb == "list"', by: ['identities(user.username, user.groups)']}
`

var t0 = time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)

// ev builds an event at t0+sec seconds.
func ev(id string, sec float64, user, verb, resource string, code int, extra ...string) []byte {
	m := map[string]any{
		"auditID": id, "stage": "ResponseComplete", "verb": verb,
		"user":                     map[string]any{"username": user, "groups": []string{"system:authenticated"}},
		"objectRef":                map[string]any{"resource": resource, "namespace": "ns", "name": id},
		"responseStatus":           map[string]any{"code": code},
		"requestReceivedTimestamp": t0.Add(time.Duration(sec * float64(time.Second))).Format(time.RFC3339Nano),
	}
	for i := 0; i+1 < len(extra); i += 2 {
		var v any
		if err := json.Unmarshal([]byte(extra[i+1]), &v); err != nil {
			v = extra[i+1]
		}
		m[extra[i]] = v
	}
	b, _ := json.Marshal(m)
	return b
}

func compileTestRules(t testing.TB, src string) *RuleSet {
	t.Helper()
	cat, err := ParseRuleFile("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// runBatches feeds each batch to one engine and returns "rule key count"
// per alert.
func runBatches(t *testing.T, rs *RuleSet, workers int, lateness time.Duration, batches ...[][]byte) []string {
	t.Helper()
	return runBatchesWith(t, Options{Rules: rs, Workers: workers, Lateness: lateness}, batches...)
}

func runBatchesWith(t *testing.T, o Options, batches ...[][]byte) []string {
	t.Helper()
	var got []string
	o.Emit = func(a Alert) error {
		got = append(got, fmt.Sprintf("%s %s %d", a.Rule, a.GroupKey, a.Count))
		return nil
	}
	e, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
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
	return got
}

func TestWindows(t *testing.T) {
	rs := compileTestRules(t, windowRules)
	binding := func(id string, sec float64, kind, name string) []byte {
		return ev(id, sec, "root", "create", "clusterrolebindings", 201,
			"requestObject", fmt.Sprintf(`{"roleRef":{"name":"cluster-admin"},"subjects":[{"kind":%q,"name":%q,"namespace":"ci"}]}`, kind, name))
	}
	f := func(name string, lateness time.Duration, want []string, events ...[]byte) {
		// Without the engine's own event set (SourceDedups), duplicates
		// are still counted once: a request's match is recorded per rule.
		for _, sourceDedups := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/source-dedups=%v", name, sourceDedups), func(t *testing.T) {
				t.Helper()
				got := runBatchesWith(t, Options{Rules: rs, Workers: 2, Lateness: lateness, SourceDedups: sourceDedups}, events)
				if !slices.Equal(got, want) {
					t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
				}
			})
		}
	}
	m := time.Minute
	// threshold
	f("threshold fires at count", m, []string{"burst eve 3"},
		ev("a", 0, "eve", "get", "pods", 403), ev("b", 10, "eve", "get", "pods", 403), ev("c", 20, "eve", "get", "pods", 403))
	f("threshold below count", m, nil,
		ev("a", 0, "eve", "get", "pods", 403), ev("b", 10, "eve", "get", "pods", 403))
	f("threshold window slides", m, nil,
		ev("a", 0, "eve", "get", "pods", 403), ev("b", 50, "eve", "get", "pods", 403), ev("c", 61, "eve", "get", "pods", 403))
	f("threshold per key", m, nil,
		ev("a", 0, "eve", "get", "pods", 403), ev("b", 1, "bob", "get", "pods", 403), ev("c", 2, "eve", "get", "pods", 403))
	f("threshold out of order within lateness", m, []string{"burst eve 3"},
		ev("c", 20, "eve", "get", "pods", 403), ev("a", 0, "eve", "get", "pods", 403), ev("b", 10, "eve", "get", "pods", 403))
	f("duplicates count once", m, nil,
		ev("a", 0, "eve", "get", "pods", 403), ev("a", 0, "eve", "get", "pods", 403), ev("b", 1, "eve", "get", "pods", 403))
	f("same request at two stages counts once", m, nil,
		ev("a", 0, "eve", "get", "pods", 403, "stage", "ResponseStarted"), ev("a", 0, "eve", "get", "pods", 403), ev("b", 1, "eve", "get", "pods", 403))
	f("too late is not windowed", 30*time.Second, nil,
		ev("a", 0, "eve", "get", "pods", 403), ev("b", 10, "eve", "get", "pods", 403),
		ev("x", 100, "bob", "get", "pods", 200), ev("c", 20, "eve", "get", "pods", 403))
	f("cooldown suppresses the same key", m, []string{"burst eve 3"},
		ev("a", 0, "eve", "get", "pods", 403), ev("b", 1, "eve", "get", "pods", 403), ev("c", 2, "eve", "get", "pods", 403),
		ev("d", 3, "eve", "get", "pods", 403), ev("e", 4, "eve", "get", "pods", 403), ev("f", 5, "eve", "get", "pods", 403))
	f("fires again after cooldown", m, []string{"burst eve 3", "burst eve 3"},
		ev("a", 0, "eve", "get", "pods", 403), ev("b", 1, "eve", "get", "pods", 403), ev("c", 2, "eve", "get", "pods", 403),
		ev("d", 400, "eve", "get", "pods", 403), ev("e", 401, "eve", "get", "pods", 403), ev("f", 402, "eve", "get", "pods", 403))
	// distinct
	f("distinct values fire", m, []string{"enum sa 3"},
		ev("s1", 0, "sa", "get", "secrets", 200), ev("s2", 1, "sa", "get", "secrets", 200), ev("s3", 2, "sa", "get", "secrets", 200))
	f("repeated value counts once", m, nil,
		ev("s1", 0, "sa", "get", "secrets", 200, "objectRef", `{"resource":"secrets","namespace":"a","name":"x"}`),
		ev("s2", 1, "sa", "get", "secrets", 200, "objectRef", `{"resource":"secrets","namespace":"a","name":"x"}`),
		ev("s3", 2, "sa", "get", "secrets", 200))
	f("distinct values expire", m, nil,
		ev("s1", 0, "sa", "get", "secrets", 200), ev("s2", 30, "sa", "get", "secrets", 200), ev("s3", 70, "sa", "get", "secrets", 200))
	// sequence
	f("grant then use by the bound user", m, []string{"grant-use user:mallory 2"},
		binding("g", 0, "User", "mallory"), ev("u", 30, "mallory", "list", "secrets", 200))
	f("grant to a service account then use", m, []string{"grant-use user:system:serviceaccount:ci:deployer 2"},
		binding("g", 0, "ServiceAccount", "deployer"), ev("u", 30, "system:serviceaccount:ci:deployer", "list", "secrets", 200))
	f("grant to a group matches a member", m, []string{"grant-use group:system:authenticated 2"},
		binding("g", 0, "Group", "system:authenticated"), ev("u", 30, "alice", "list", "secrets", 200))
	f("use by someone else", m, nil,
		binding("g", 0, "User", "mallory"), ev("u", 30, "alice", "list", "secrets", 200))
	f("use before grant", m, nil,
		ev("u", 0, "mallory", "list", "secrets", 200), binding("g", 30, "User", "mallory"))
	f("use after within", m, nil,
		binding("g", 0, "User", "mallory"), ev("u", 200, "mallory", "list", "secrets", 200))
	f("use arriving before grant, in order by event time", m, []string{"grant-use user:mallory 2"},
		ev("u", 30, "mallory", "list", "secrets", 200), binding("g", 0, "User", "mallory"))
}

// TestWindows_BatchSplitAndWorkers checks that the alerts do not depend on
// how the input is cut into batches or on the worker count.
func TestWindows_BatchSplitAndWorkers(t *testing.T) {
	rs := compileTestRules(t, windowRules)
	var events [][]byte
	for i := range 300 {
		user := fmt.Sprintf("u%d", i%7)
		sec := float64(i) + float64(i%5)*3 // out of order by a few seconds
		switch i % 3 {
		case 0:
			events = append(events, ev(fmt.Sprintf("a%d", i), sec, user, "get", "pods", 403))
		case 1:
			events = append(events, ev(fmt.Sprintf("s%d", i), sec, user, "get", "secrets", 200))
		default:
			events = append(events, ev(fmt.Sprintf("x%d", i), sec, user, "list", "pods", 200))
		}
	}
	want := runBatches(t, rs, 1, time.Minute, events)
	if len(want) == 0 {
		t.Fatal("no alerts: the test input must fire the rules")
	}
	for _, workers := range []int{1, 2, 8} {
		for _, size := range []int{1, 7, 64, 300} {
			var batches [][][]byte
			for i := 0; i < len(events); i += size {
				batches = append(batches, events[i:min(i+size, len(events))])
			}
			got := runBatches(t, rs, workers, time.Minute, batches...)
			if !slices.Equal(got, want) {
				t.Errorf("workers=%d batch=%d: got %d alerts %v, want %d %v", workers, size, len(got), got, len(want), want)
			}
		}
	}
}

// TestEngine_SnapshotRestore stops an engine half-way, restores its state
// into a new one and checks the alerts are those of an uninterrupted run.
func TestEngine_SnapshotRestore(t *testing.T) {
	rs := compileTestRules(t, windowRules)
	var events [][]byte
	for i := range 120 {
		user := fmt.Sprintf("u%d", i%3)
		if i%2 == 0 {
			events = append(events, ev(fmt.Sprintf("a%d", i), float64(i), user, "get", "pods", 403))
		} else {
			events = append(events, ev(fmt.Sprintf("s%d", i), float64(i), user, "get", "secrets", 200))
		}
	}
	want := runBatches(t, rs, 2, time.Minute, events)
	if len(want) == 0 {
		t.Fatal("no alerts: the input must fire the rules")
	}
	var got []string
	emit := func(a Alert) error {
		got = append(got, fmt.Sprintf("%s %s %d", a.Rule, a.GroupKey, a.Count))
		return nil
	}
	process := func(e *Engine, evs [][]byte) {
		recs := make([]ingest.Record, len(evs))
		for i := range evs {
			recs[i] = ingest.Record{Data: evs[i]}
		}
		if err := e.Process(context.Background(), ingest.Batch{Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	first, _ := New(Options{Rules: rs, Workers: 2, Lateness: time.Minute, Emit: emit})
	process(first, events[:70])
	var snap strings.Builder
	if err := first.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(snap.String(), `"burst":{`) || !strings.Contains(snap.String(), `"enum":{`) {
		t.Fatalf("snapshot lacks window keys: %s", snap.String()[:min(300, snap.Len())])
	}
	second, _ := New(Options{Rules: rs, Workers: 3, Lateness: time.Minute, Emit: emit})
	if err := second.Restore(strings.NewReader(snap.String())); err != nil {
		t.Fatal(err)
	}
	process(second, events[70:])
	if err := second.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("after restore got\n  %v\nwant\n  %v", got, want)
	}
}

// TestEngine_Robustness pins behaviours a user must be able to rely on:
// values from the decoder's buffer are copied before windows keep them,
// one event with several keys raises one alert per key (but a sequence
// one per event), an Emit failure loses no alert, a snapshot of a changed
// rule is dropped without harm, and key bounds do not depend on workers.
func TestEngine_Robustness(t *testing.T) {
	const rules = `
rules:
- id: groups-distinct
  title: distinct groups
  severity: high
  audit: {level: Metadata, resources: [{group: "", resources: [pods]}]}
  match: objectRef.resource == "pods" && verb == "get"
  window: {kind: distinct, by: [user.username], distinct: user.groups, within: 1m, count: 3}
- id: groups-threshold
  title: 403 per group
  severity: high
  audit: {level: Metadata, resources: [{group: "", resources: [pods]}]}
  match: responseStatus.code == 403
  window: {kind: threshold, by: [user.groups], within: 1m, count: 2}
`
	withGroups := func(id string, sec float64, user, verb string, code int, groups string) []byte {
		return ev(id, sec, user, verb, "pods", code, "user", fmt.Sprintf(`{"username":%q,"groups":%s}`, user, groups))
	}
	rs := compileTestRules(t, rules)

	t.Run("decoder memory is not retained", func(t *testing.T) {
		got := runBatches(t, rs.Subset("groups-distinct"), 1, time.Minute, [][]byte{
			withGroups("a", 0, "u", "get", 200, `["grp-aaaa"]`), withGroups("b", 1, "u", "get", 200, `["grp-bbbb"]`),
			withGroups("c", 2, "u", "get", 200, `["grp-cccc"]`), withGroups("d", 3, "x", "list", 200, `["grp-zzzz"]`),
			withGroups("e", 4, "x", "list", 200, `["grp-yyyy"]`)})
		if !slices.Equal(got, []string{"groups-distinct u 3"}) {
			t.Errorf("got %v", got)
		}
	})
	t.Run("one alert per key", func(t *testing.T) {
		got := runBatches(t, rs.Subset("groups-threshold"), 1, time.Minute, [][]byte{
			withGroups("a", 0, "u", "get", 403, `["team-a","team-b"]`), withGroups("b", 1, "u", "get", 403, `["team-a","team-b"]`)})
		if !slices.Equal(got, []string{"groups-threshold team-a 2", "groups-threshold team-b 2"}) {
			t.Errorf("got %v", got)
		}
	})
	t.Run("emit failure loses nothing", func(t *testing.T) {
		fail := true
		var got []string
		e, _ := New(Options{Rules: rs.Subset("groups-threshold"), Workers: 1, Lateness: time.Nanosecond, Emit: func(a Alert) error {
			if fail {
				fail = false
				return fmt.Errorf("sink down")
			}
			got = append(got, a.GroupKey)
			return nil
		}})
		batch := ingest.Batch{Records: []ingest.Record{
			{Data: withGroups("a", 0, "u", "get", 403, `["g"]`)}, {Data: withGroups("b", 1, "u", "get", 403, `["g"]`)},
			{Data: ev("x", 10, "v", "get", "pods", 200)}}}
		if err := e.Process(context.Background(), batch); err == nil {
			t.Fatal("want the Emit error")
		}
		// The queue redelivers the batch: nothing is counted twice and the
		// alert raised before arrives once.
		if err := e.Process(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		if err := e.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []string{"g"}) {
			t.Errorf("got %v, want one alert for g", got)
		}
	})
	t.Run("restore drops state of a changed window", func(t *testing.T) {
		seqRules := compileTestRules(t, windowRules)
		first, _ := New(Options{Rules: seqRules, Workers: 1, Emit: func(Alert) error { return nil }})
		if err := first.Process(context.Background(), ingest.Batch{Records: []ingest.Record{
			{Data: ev("a", 0, "eve", "get", "pods", 403)}}}); err != nil {
			t.Fatal(err)
		}
		var snap strings.Builder
		if err := first.Snapshot(&snap); err != nil {
			t.Fatal(err)
		}
		// The rule "burst" becomes a sequence with the same id.
		changed := compileTestRules(t, strings.Replace(strings.Replace(windowRules, "- id: burst\n", "- id: burst-was\n", 1), "- id: grant-use", "- id: burst", 1))
		second, _ := New(Options{Rules: changed, Workers: 1, Emit: func(Alert) error { return nil }})
		err := second.Restore(strings.NewReader(snap.String()))
		if err == nil || !strings.Contains(err.Error(), "rule burst: gone or its window changed") {
			t.Fatalf("restore: %v", err)
		}
		if err := second.Process(context.Background(), ingest.Batch{Records: []ingest.Record{
			{Data: ev("b", 1, "eve", "list", "secrets", 200)}}}); err != nil {
			t.Fatal(err)
		}
		if err := second.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("key bound independent of workers", func(t *testing.T) {
		var events [][]byte
		for round := range 3 {
			for u := range 40 {
				events = append(events, ev(fmt.Sprintf("r%du%d", round, u), float64(round*40+u)/10, fmt.Sprintf("user%d", u), "get", "pods", 403))
			}
		}
		run := func(workers int) []string {
			var got []string
			e, _ := New(Options{Rules: rs.Subset("groups-threshold"), Workers: workers, MaxKeysPerRule: 50, Emit: func(a Alert) error {
				got = append(got, a.GroupKey)
				return nil
			}})
			recs := make([]ingest.Record, len(events))
			for i := range events {
				recs[i] = ingest.Record{Data: events[i]}
			}
			if err := e.Process(context.Background(), ingest.Batch{Records: recs}); err != nil {
				t.Fatal(err)
			}
			if err := e.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			return got
		}
		want := run(1)
		for _, w := range []int{4, 16} {
			if got := run(w); !slices.Equal(got, want) {
				t.Errorf("workers %d: %d alerts, workers 1: %d", w, len(got), len(want))
			}
		}
	})
}

// TestEngine_CloseGivesBackItsKeys: engines sharing a metrics set (one per
// partition) add to the same key gauge; a closed one takes its keys out.
func TestEngine_CloseGivesBackItsKeys(t *testing.T) {
	rs := compileTestRules(t, windowRules)
	set := metrics.NewSet()
	gauge := set.GetOrCreateGauge(`vigil_detect_window_keys{rule="burst"}`, nil)
	process := func(e *Engine, users ...string) {
		recs := make([]ingest.Record, len(users))
		for i, u := range users {
			recs[i] = ingest.Record{Data: ev(fmt.Sprint(u, i), float64(i), u, "get", "pods", 403)}
		}
		if err := e.Process(context.Background(), ingest.Batch{Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	newEngine := func() *Engine {
		e, err := New(Options{Rules: rs, Metrics: set, Emit: func(Alert) error { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b := newEngine(), newEngine()
	process(a, "alice", "bob", "carol")
	process(b, "dave")
	if got := gauge.Get(); got != 4 {
		t.Fatalf("keys of both engines: %v, want 4", got)
	}
	a.Close()
	if got := gauge.Get(); got != 1 {
		t.Fatalf("keys after one engine closed: %v, want 1", got)
	}
}
