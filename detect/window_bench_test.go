package detect

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// heapBytes returns the live heap after a full collection.
func heapBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

var benchKeyCount = 1_000_000

const benchKeyRules = `
rules:
- id: burst
  title: burst
  severity: high
  audit: {level: Metadata}
  match: responseStatus.code == 403
  window: {kind: threshold, by: [user.username], within: 1m, count: 20, cooldown: 10m}
- id: burst-wide
  title: burst counted in buckets
  severity: high
  audit: {level: Metadata}
  match: responseStatus.code == 403
  window: {kind: threshold, by: [user.username], within: 1m, count: 1000, cooldown: 10m}
- id: enum
  title: enum
  severity: high
  audit: {level: Metadata}
  match: objectRef.resource == "secrets"
  window: {kind: distinct, by: [user.username], distinct: objectRef.name, within: 5m, count: 10, cooldown: 30m}
`

// benchKeys applies perKey matches to each of keys keys of one rule, one
// op being the whole run, and reports the heap each key holds: its state
// and its place in the map. Key strings, distinct values and auditIDs are
// made before the measure starts: they are the input's (the key and value
// strings are kept as they are, a UUID auditID in 16 bytes of the state).
func benchKeys(b *testing.B, rule string, keys, perKey int) {
	rs := compileTestRules(b, benchKeyRules)
	r := rs.Rule(rule)
	keyNames := make([]string, keys)
	for i := range keyNames {
		keyNames[i] = "system:serviceaccount:ns:sa-" + strconv.Itoa(i)
	}
	vals := make([]string, perKey)
	for i := range vals {
		vals[i] = "secret-" + strconv.Itoa(i)
	}
	ids := make([]auditID, keys*perKey)
	for i := range ids {
		ids[i] = newAuditID(fmt.Sprintf("%08x-6f3a-4d1e-9a57-0c1f2e3d4b5a", i))
	}
	t0 := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC).UnixNano()
	var perKeyBytes float64
	for b.Loop() {
		sh := newShard(DefaultLateness, 2*keys, DefaultDistinctExact, newEngineMetrics(metrics.NewSet(), rs))
		before := heapBytes()
		for j := range perKey {
			for i, k := range keyNames {
				m := windowMatch{rule: r, t: t0 + int64(j)*int64(time.Second) + int64(i), step: -1,
					key: k, value: vals[j], id: ids[j*keys+i]}
				sh.apply(&m)
			}
		}
		held := sh.table(r).size()
		if len(sh.fired) > 0 || held != keys {
			b.Fatalf("%d keys held, %d alerts: want %d keys and no alert", held, len(sh.fired), keys)
		}
		perKeyBytes = float64(heapBytes()-before) / float64(held)
		runtime.KeepAlive(sh)
	}
	b.ReportMetric(perKeyBytes, "bytes/key")
	runtime.KeepAlive(keyNames)
	runtime.KeepAlive(vals)
}

// BenchmarkWindowKeys reports the heap a window key holds, with 1M keys of
// one rule, for one and for three matches per key (each with its own
// auditID, kept in the alert's sample):
//
//	go test ./detect -run '^$' -bench WindowKeys -benchtime 1x
func BenchmarkWindowKeys(b *testing.B) {
	for _, c := range []struct {
		name, rule string
		perKey     int
	}{
		{"threshold/1match", "burst", 1},
		{"threshold/3matches", "burst", 3},
		{"threshold-buckets/1match", "burst-wide", 1},
		{"threshold-buckets/3matches", "burst-wide", 3},
		{"distinct/1value", "enum", 1},
		{"distinct/3values", "enum", 3},
	} {
		b.Run(c.name, func(b *testing.B) { benchKeys(b, c.rule, benchKeyCount, c.perKey) })
	}
}
