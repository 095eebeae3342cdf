package detect

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// baselineDays is nine days of two service accounts and a user: steady
// clients and namespaces for eight days, then new ones on day 9.
func baselineDays() (learn, burst [][]byte) {
	for d := 1; d <= 8; d++ {
		for h := 0; h < 24; h += 6 {
			at := day(d).Add(time.Duration(h) * time.Hour)
			learn = append(learn,
				fsEvent(fmt.Sprintf("d%d-%d-a", d, h), at, sa, kubectl, "pods", "ci"),
				fsEvent(fmt.Sprintf("d%d-%d-b", d, h), at, "system:serviceaccount:web:api", "api/1.0", "configmaps", "web"),
				fsEvent(fmt.Sprintf("d%d-%d-c", d, h), at, "alice", kubectl, "secrets", "team-a"))
		}
	}
	at := day(9).Add(12 * time.Hour)
	burst = [][]byte{
		fsEvent("b1", at, sa, python, "secrets", "kube-system"),
		fsEvent("b2", at.Add(time.Second), sa, python, "secrets", "prod"),
		fsEvent("b3", at.Add(2*time.Second), "alice", kubectl, "secrets", "team-a"),
		fsEvent("b4", at.Add(3*time.Second), "alice", kubectl, "secrets", "payments"),
	}
	return learn, burst
}

func saveBaselines(t *testing.T, e *Engine) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := e.SaveBaselines(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestBaselines_SplitRun: learning from one run, saving, and replaying the
// next day against the loaded baselines raises what one run over all days
// raises.
func TestBaselines_SplitRun(t *testing.T) {
	rs := compileTestRules(t, firstSeenRules)
	learn, burst := baselineDays()

	whole, wholeAlerts := newCollecting(t, Options{Rules: rs})
	collect(t, whole, wholeAlerts, learn, burst)
	want := describeAlerts(*wholeAlerts)
	if len(want) != 3 {
		t.Fatalf("one run raised %d alerts, want 3 (new client, two new namespaces in one cooldown are one): %v", len(want), want)
	}

	first, firstAlerts := newCollecting(t, Options{Rules: rs})
	collect(t, first, firstAlerts, learn)
	if len(*firstAlerts) != 0 {
		t.Fatalf("learning days raised %v", describeAlerts(*firstAlerts))
	}
	file := saveBaselines(t, first)

	second, secondAlerts := newCollecting(t, Options{Rules: rs})
	if err := second.LoadBaselines(bytes.NewReader(file)); err != nil {
		t.Fatal(err)
	}
	collect(t, second, secondAlerts, burst)
	if got := describeAlerts(*secondAlerts); !slices.Equal(got, want) {
		t.Errorf("split run:\n  %s\none run:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for i, a := range *secondAlerts {
		if a.Fingerprint != (*wholeAlerts)[i].Fingerprint {
			t.Errorf("alert %d: fingerprint %s, one run %s", i, a.Fingerprint, (*wholeAlerts)[i].Fingerprint)
		}
	}

	// Without the baselines, day 9 starts learning: nothing.
	fresh, freshAlerts := newCollecting(t, Options{Rules: rs})
	collect(t, fresh, freshAlerts, burst)
	if len(*freshAlerts) != 0 {
		t.Errorf("no baselines: %v", describeAlerts(*freshAlerts))
	}
}

// TestBaselines_Merge: loading is idempotent, and loading into an engine
// that saw more keeps what it saw.
func TestBaselines_Merge(t *testing.T) {
	rs := compileTestRules(t, firstSeenRules)
	learn, burst := baselineDays()
	a, _ := newCollecting(t, Options{Rules: rs})
	collect(t, a, new([]Alert), learn)
	file := saveBaselines(t, a)

	b, _ := newCollecting(t, Options{Rules: rs})
	for range 2 {
		if err := b.LoadBaselines(bytes.NewReader(file)); err != nil {
			t.Fatal(err)
		}
	}
	if got := saveBaselines(t, b); !bytes.Equal(got, bytes.Replace(file, []byte(`"eventTime":"`+formatTime(a.watermark)+`",`), nil, 1)) {
		t.Errorf("loaded twice:\n%s\nsaved:\n%s", got, file)
	}

	c, _ := newCollecting(t, Options{Rules: rs})
	collect(t, c, new([]Alert), burst)
	if err := c.LoadBaselines(bytes.NewReader(file)); err != nil {
		t.Fatal(err)
	}
	w := c.shardFor(rs.Rule("sa-new-agent"), sa).keys[rs.Rule("sa-new-agent")].get(sa).(*firstSeenWindow)
	if got, want := w.describe(), "since 2026-11-22T06:00:00Z: kubectl, python-requests"; got != want {
		t.Errorf("merged key: %s, want %s", got, want)
	}
}

func TestBaselines_Refused(t *testing.T) {
	rs := compileTestRules(t, firstSeenRules)
	learn, _ := baselineDays()
	a, _ := newCollecting(t, Options{Rules: rs})
	collect(t, a, new([]Alert), learn)
	file := saveBaselines(t, a)

	// A rule whose value changed loses its baseline; the others load.
	changed := compileTestRules(t, strings.Replace(firstSeenRules, "value: uaFamily(userAgent)", "value: userAgent", 1))
	b, _ := newCollecting(t, Options{Rules: changed})
	err := b.LoadBaselines(bytes.NewReader(file))
	if err == nil || errors.Is(err, ErrBadBaseline) || !strings.Contains(err.Error(), "rule sa-new-agent: its key or value expression changed, 2 keys dropped") {
		t.Errorf("changed rule: %v", err)
	}
	if n := b.shardFor(changed.Rule("secrets-new-namespace"), "alice").table(changed.Rule("secrets-new-namespace")).size(); n != 1 {
		t.Errorf("the unchanged rule's keys were not loaded")
	}

	for name, data := range map[string]string{
		"empty":         "",
		"not baselines": `{"version":2}`,
		"other version": `{"format":"vigil-baselines","version":2,"rules":{}}`,
		"broken line":   strings.SplitN(string(file), "\n", 2)[0] + "\n{\"rule\":\n",
		"unknown rule":  strings.SplitN(string(file), "\n", 2)[0] + "\n{\"rule\":\"nope\",\"key\":\"k\"}\n",
		"bad time":      strings.SplitN(string(file), "\n", 2)[0] + "\n{\"rule\":\"sa-new-agent\",\"key\":\"k\",\"first\":\"yesterday\"}\n",
	} {
		e, _ := newCollecting(t, Options{Rules: rs})
		if err := e.LoadBaselines(strings.NewReader(data)); !errors.Is(err, ErrBadBaseline) {
			t.Errorf("%s: %v, want ErrBadBaseline", name, err)
		}
	}
}

// TestBaselines_NotInSnapshot: window snapshots leave baselines to their
// own file, and the change count moves only when a save would differ.
func TestBaselines_NotInSnapshot(t *testing.T) {
	rs := compileTestRules(t, firstSeenRules)
	e, _ := newCollecting(t, Options{Rules: rs})
	collect(t, e, new([]Alert), [][]byte{fsEvent("a", day(1), sa, kubectl, "pods", "ci")})
	var snap bytes.Buffer
	if err := e.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(snap.String(), sa) {
		t.Errorf("snapshot holds a baseline: %s", snap.String())
	}
	if !e.BaselinesChanged() {
		t.Error("a new key did not change the baselines")
	}
	e.BaselinesSaved()
	collect(t, e, new([]Alert), [][]byte{fsEvent("b", day(1).Add(time.Hour), sa, kubectl, "pods", "ci")})
	if e.BaselinesChanged() {
		t.Error("a known value seen again the same day changed the baselines")
	}
	collect(t, e, new([]Alert), [][]byte{fsEvent("c", day(2), sa, kubectl, "pods", "ci")})
	if !e.BaselinesChanged() {
		t.Error("a known value seen on a later day did not change the baselines")
	}
}

// TestBaselines_Memory fills baselines of 10 values per key and measures
// the heap they hold. VIGIL_BASELINE_KEYS sets the keys (docs/first-seen.md
// reports 100,000); the bound is 2,000 bytes a key, 200 MB for 100,000.
func TestBaselines_Memory(t *testing.T) {
	keys := 5_000
	if s := os.Getenv("VIGIL_BASELINE_KEYS"); s != "" {
		if _, err := fmt.Sscan(s, &keys); err != nil {
			t.Fatalf("VIGIL_BASELINE_KEYS=%q: %v", s, err)
		}
	}
	rs := compileTestRules(t, firstSeenRules).Subset("sa-new-agent")
	// Small sets of recent events, so that the heap measured is the
	// baselines'.
	e, _ := newCollecting(t, Options{Rules: rs, MaxKeysPerRule: 2 * keys, SourceDedups: true, DedupSize: 1 << 10})
	const batch = 10_000
	recs := make([]ingest.Record, 0, batch)
	flush := func() {
		if err := e.Process(t.Context(), ingest.Batch{Records: recs}); err != nil {
			t.Fatal(err)
		}
		recs = recs[:0]
	}
	// A batch no rule matches first: the engine's own buffers are not
	// counted.
	for i := range batch {
		recs = append(recs, ingest.Record{Data: []byte(fmt.Sprintf(
			`{"auditID":"w-%d","stage":"ResponseComplete","verb":"get","user":{"username":"alice"},"requestReceivedTimestamp":%q}`,
			i, day(1).Format(time.RFC3339Nano)))})
	}
	flush()
	before := heapInUse()
	start := time.Now()
	for v := range 10 {
		for k := range keys {
			at := day(1).Add(time.Duration(v*keys+k) * time.Millisecond)
			recs = append(recs, ingest.Record{Data: []byte(fmt.Sprintf(
				`{"auditID":"%d-%d","stage":"ResponseComplete","verb":"get","user":{"username":"system:serviceaccount:team-%d:app-%d"},`+
					`"userAgent":"client-%d/1.0","requestReceivedTimestamp":%q}`, v, k, k%100, k, v, at.Format(time.RFC3339Nano)))})
			if len(recs) == batch {
				flush()
			}
		}
	}
	flush()
	took := time.Since(start)
	held := heapInUse() - before
	values := 0
	for _, sh := range e.shards {
		if tb := sh.keys[rs.Rules[0]]; tb != nil {
			for _, w := range tb.all() {
				values += len(w.(*firstSeenWindow).Values)
			}
		}
	}
	if values != 10*keys {
		t.Fatalf("%d values, want %d", values, 10*keys)
	}
	perKey := float64(held) / float64(keys)
	t.Logf("%d keys x 10 values: %.1f MB of heap, %.0f bytes a key, %s (%d events in %v)", keys, float64(held)/1e6, perKey,
		residentMemory(), 10*keys, took.Round(time.Millisecond))
	if perKey > 2000 {
		t.Errorf("%.0f bytes a key, want at most 2,000 (200 MB for 100,000 keys)", perKey)
	}
	start = time.Now()
	file := saveBaselines(t, e)
	saved := time.Since(start)
	fresh, _ := newCollecting(t, Options{Rules: rs, MaxKeysPerRule: 2 * keys})
	start = time.Now()
	if err := fresh.LoadBaselines(bytes.NewReader(file)); err != nil {
		t.Fatal(err)
	}
	t.Logf("baselines file: %.1f MB, saved in %v, loaded in %v", float64(len(file))/1e6,
		saved.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	runtime.KeepAlive(e)
}

// residentMemory is the process's resident set as /proc reports it, or ""
// where there is no /proc.
func residentMemory() string {
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return "resident " + strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

// describe is a key's baseline as a person reads it.
func (w *firstSeenWindow) describe() string {
	vals := make([]string, len(w.Values))
	for i, x := range w.Values {
		vals[i] = x.V
	}
	slices.Sort(vals)
	return fmt.Sprintf("since %s: %s", unixUTC(w.First).Format(time.RFC3339), strings.Join(vals, ", "))
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
