package detect

import (
	"runtime"
	"strconv"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/ingest"
)

// heapBytes returns the live heap after a full collection.
func heapBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// benchWindow applies b.N matches to one shard and reports ns per update
// and the retained bytes per key (and per value for distinct windows).
// keys distinct keys receive the matches round-robin; values distinct
// values per key (distinct windows).
func benchWindow(b *testing.B, rule string, keys, values int) {
	// Counts too high to fire: the benchmark measures state, not alerts.
	rs := compileTestRules(b, windowRules+`
- id: enum-wide
  title: enum
  severity: high
  audit: {level: Metadata, resources: [{group: "", resources: [secrets]}]}
  match: objectRef.resource == "secrets"
  window: {kind: distinct, by: [user.username], distinct: objectRef.name, within: 1h, count: 1000000}
`)
	r := rs.Rule(rule)
	m := newEngineMetrics(metrics.NewSet(), rs)
	sh := newShard(0, 10_000_000, 1, m)
	ev := &ingest.Event{AuditID: "2d9b3c8e-6f3a-4d1e-9a57-0c1f2e3d4b5a"}
	keyNames := make([]string, keys)
	for i := range keyNames {
		keyNames[i] = "system:serviceaccount:ns:sa-" + strconv.Itoa(i)
	}
	valNames := make([]string, values)
	for i := range valNames {
		valNames[i] = "namespace/secret-" + strconv.Itoa(i)
	}
	before := heapBytes()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		wm := &windowMatch{rule: r, ev: ev, t: int64(i), key: keyNames[i%keys], step: -1}
		if values > 0 {
			wm.value = valNames[(i/keys)%values]
		}
		sh.apply(wm)
	}
	b.StopTimer()
	after := heapBytes()
	held := 0
	for _, ks := range sh.keys {
		held += len(ks)
	}
	b.ReportMetric(float64(after-before)/float64(held), "bytes/key")
	if rule == "burst" {
		// An idle key: its window emptied, a cooldown still running.
		for _, ks := range sh.keys {
			for _, w := range ks {
				w.(*thresholdWindow).Matches = nil
			}
		}
		b.ReportMetric(float64(heapBytes()-before)/float64(held), "bytes/idle-key")
	}
	if values > 0 {
		b.ReportMetric(float64(after-before)/float64(held*min(values, (b.N+keys-1)/keys)), "bytes/value")
	}
	runtime.KeepAlive(keyNames)
	runtime.KeepAlive(sh)
}

// BenchmarkWindow_Threshold1MKeys: one match per key, 1M keys (key strings
// are not counted: they are the caller's).
func BenchmarkWindow_Threshold1MKeys(b *testing.B) {
	benchWindow(b, "burst", 1_000_000, 0)
}

// BenchmarkWindow_Distinct1MKeys: distinct windows, 1M keys.
func BenchmarkWindow_Distinct1MKeys(b *testing.B) {
	benchWindow(b, "enum-wide", 1_000_000, 2)
}

// BenchmarkWindow_Distinct1KKeys100Values: bytes per distinct value.
func BenchmarkWindow_Distinct1KKeys100Values(b *testing.B) {
	benchWindow(b, "enum-wide", 1_000, 100)
}
