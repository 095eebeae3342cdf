package detect

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/ingest"
)

const suppressRules = `
rules:
- id: secret-read
  title: secret read
  severity: medium
  audit: {level: Metadata}
  match: objectRef.resource == "secrets" && verb == "get"
- id: exec
  title: exec
  severity: high
  audit: {level: Metadata}
  match: objectRef.subresource == "exec"
  suppress: {for: 0s}
- id: delete
  title: delete
  severity: high
  audit: {level: Metadata}
  match: verb == "delete"
  suppress: {by: [user.username], for: 1m}
`

func TestSuppress(t *testing.T) {
	rs := compileTestRules(t, suppressRules)
	in := func(id string, sec float64, user, verb, ns string, extra ...string) []byte {
		return ev(id, sec, user, verb, "secrets", 200, append([]string{"objectRef",
			fmt.Sprintf(`{"resource":"secrets","namespace":%q,"name":%q}`, ns, id)}, extra...)...)
	}
	exec := func(id string, sec float64) []byte {
		return ev(id, sec, "eve", "create", "pods", 101, "objectRef", `{"resource":"pods","subresource":"exec","namespace":"a","name":"p"}`)
	}
	cases := []struct {
		name   string
		events [][]byte
		want   []string
	}{
		{"a storm is one alert", [][]byte{in("a", 0, "eve", "get", "ns1"), in("b", 1, "eve", "get", "ns1"), in("c", 2, "eve", "get", "ns1")},
			[]string{"secret-read a"}},
		{"the next alert after the period carries the count", [][]byte{in("a", 0, "eve", "get", "ns1"), in("b", 60, "eve", "get", "ns1"),
			in("c", 120, "eve", "get", "ns1"), in("d", 601, "eve", "get", "ns1")},
			[]string{"secret-read a", "secret-read d suppressed=2 since=1m0s"}},
		{"other namespaces, users and addresses stay visible", [][]byte{in("a", 0, "eve", "get", "ns1"), in("b", 1, "eve", "get", "ns2"),
			in("c", 2, "bob", "get", "ns1"), in("d", 3, "eve", "get", "ns1", "sourceIPs", `["192.0.2.7"]`)},
			[]string{"secret-read a", "secret-read b", "secret-read c", "secret-read d"}},
		{"late alert within the period is suppressed", [][]byte{in("a", 100, "eve", "get", "ns1"), in("b", 40, "eve", "get", "ns1")},
			[]string{"secret-read a"}},
		{"for: 0s turns it off", [][]byte{exec("a", 0), exec("b", 1)}, []string{"exec a", "exec b"}},
		{"custom key and period", [][]byte{in("a", 0, "eve", "delete", "ns1"), in("b", 1, "eve", "delete", "ns2"),
			in("c", 2, "bob", "delete", "ns1"), in("d", 70, "eve", "delete", "ns3")},
			[]string{"delete a", "delete c", "delete d suppressed=1 since=1s"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			alerts, err := Evaluate(rs, c.events)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range alerts {
				s := a.Rule + " " + a.GroupKey
				if a.Suppressed > 0 {
					s += fmt.Sprintf(" suppressed=%d since=%s", a.Suppressed, a.SuppressedSince.Sub(t0))
				}
				got = append(got, s)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
		})
	}
}

func TestSuppress_Bounded(t *testing.T) {
	rs := compileTestRules(t, suppressRules)
	var events [][]byte
	for i := range 300 {
		events = append(events, ev(fmt.Sprintf("e%d", i), float64(i), fmt.Sprintf("user%d", i), "get", "secrets", 200))
	}
	// Every user once, then the first again: its state was evicted, so its
	// alert goes out.
	events = append(events, ev("again", 301, "user0", "get", "secrets", 200))
	var got int
	e, _ := New(Options{Rules: rs, Workers: 1, MaxKeysPerRule: 100, Emit: func(Alert) error { got++; return nil }})
	recs := make([]ingest.Record, len(events))
	for i := range events {
		recs[i] = ingest.Record{Data: events[i]}
	}
	if err := e.Process(context.Background(), ingest.Batch{Records: recs}); err != nil {
		t.Fatal(err)
	}
	if got != 301 {
		t.Errorf("%d alerts, want 301", got)
	}
	if n := len(e.suppress.keys); n > 100 {
		t.Errorf("%d suppression keys held, bound 100", n)
	}
}

func TestSuppress_Compile(t *testing.T) {
	cat, err := ParseRuleFile("test.yaml", []byte(`
rules:
- id: w
  title: w
  severity: low
  audit: {level: Metadata}
  match: verb == "get"
  window: {kind: threshold, by: [user.username], within: 1m, count: 2}
  suppress: {for: 1m}
- id: n
  title: n
  severity: low
  audit: {level: Metadata}
  match: verb == "get"
  suppress: {for: -1m, by: [nosuch.field + 1]}
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile(cat)
	for _, want := range []string{"rule w: suppress: a window rule has window.cooldown instead", "rule n: suppress.for must not be negative", "rule n: suppress.by[0]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("compile error %v, want %q", err, want)
		}
	}
}

// TestSuppress_ArrivalOrder checks that a storm delivered out of order
// raises alerts for the same periods, with the same fingerprints, as the
// storm in time order.
func TestSuppress_ArrivalOrder(t *testing.T) {
	rs := compileTestRules(t, suppressRules)
	var inOrder [][]byte
	for i := range 60 {
		inOrder = append(inOrder, ev(fmt.Sprintf("e%d", i), float64(i)*37, fmt.Sprintf("u%d", i%3), "get", "secrets", 200))
	}
	shuffled := slices.Clone(inOrder)
	for i := range shuffled {
		// Swap neighbours a few positions apart: late by up to two
		// minutes, within the lateness.
		if j := i + 3; i%2 == 0 && j < len(shuffled) {
			shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
		}
	}
	fps := func(evs [][]byte) []string {
		alerts, err := Evaluate(rs, evs)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range alerts {
			out = append(out, a.Rule+" "+a.Fingerprint)
		}
		slices.Sort(out)
		return out
	}
	want, got := fps(inOrder), fps(shuffled)
	if len(want) == 0 || len(want) >= len(inOrder) {
		t.Fatalf("%d alerts for %d events: the storm must be collapsed", len(want), len(inOrder))
	}
	if !slices.Equal(got, want) {
		t.Errorf("out of order: %v\nin order: %v", got, want)
	}
}

// TestSuppress_SnapshotRestore checks that suppression goes on across a
// snapshot, and that a snapshot of the old format is refused whole.
func TestSuppress_SnapshotRestore(t *testing.T) {
	rs := compileTestRules(t, suppressRules)
	var got []Alert
	emit := func(a Alert) error { got = append(got, a); return nil }
	process := func(e *Engine, evs ...[]byte) {
		t.Helper()
		recs := make([]ingest.Record, len(evs))
		for i := range evs {
			recs[i] = ingest.Record{Data: evs[i]}
		}
		if err := e.Process(context.Background(), ingest.Batch{Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	first, _ := New(Options{Rules: rs, Workers: 1, Emit: emit})
	process(first, ev("a", 0, "eve", "get", "secrets", 200), ev("b", 5, "eve", "get", "secrets", 200))
	var snap strings.Builder
	if err := first.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	second, _ := New(Options{Rules: rs, Workers: 1, Emit: emit})
	if err := second.Restore(strings.NewReader(snap.String())); err != nil {
		t.Fatal(err)
	}
	process(second, ev("c", 10, "eve", "get", "secrets", 200), ev("d", 700, "eve", "get", "secrets", 200))
	if len(got) != 2 || got[1].Suppressed != 2 {
		t.Errorf("got %d alerts (want 2, the second carrying 2 suppressed): %+v", len(got), got)
	}
	third, _ := New(Options{Rules: rs, Workers: 1, Emit: emit})
	err := third.Restore(strings.NewReader(`{"version":1,"watermark":1,"rules":{},"pending":[]}`))
	if !errors.Is(err, ErrBadSnapshot) {
		t.Errorf("restore of a version 1 snapshot: %v, want ErrBadSnapshot", err)
	}
}
