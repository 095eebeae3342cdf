package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

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
	var got []string
	e, err := New(Options{Rules: rs, Workers: workers, Lateness: lateness, Emit: func(a Alert) error {
		got = append(got, fmt.Sprintf("%s %s %d", a.Rule, a.GroupKey, a.Count))
		return nil
	}})
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
		t.Run(name, func(t *testing.T) {
			t.Helper()
			got := runBatches(t, rs, 2, lateness, events)
			if !slices.Equal(got, want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		})
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
		ev("a", 0, "eve", "get", "pods", 403), ev("a", 0, "eve", "get", "pods", 403, "stage", "ResponseStarted"), ev("b", 1, "eve", "get", "pods", 403))
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
	if !strings.Contains(snap.String(), `"pending":[{`) || !strings.Contains(snap.String(), `"burst":{`) {
		t.Fatalf("snapshot lacks pending matches or keys: %s", snap.String()[:min(300, snap.Len())])
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
