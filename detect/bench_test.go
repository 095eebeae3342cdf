package detect_test

import (
	"context"
	"io"
	"runtime"
	"sync"
	"testing"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/auditgen"
	"github.com/vigil-k8s/vigil/policies"
)

// The benchmarks run over generated events held in memory (the same
// generator as vigil-gen), so they measure detection and not the disk:
//
//	go test ./detect -run '^$' -bench 'Replay|Decode|Match' -cpu 1,2 -benchmem

const (
	benchEvents = 100_000
	// benchBatch is the batch size replay reads with.
	benchBatch = 4096
)

var benchData = sync.OnceValue(func() [][]byte {
	return auditgen.Events(auditgen.Options{Seed: 1}, benchEvents)
})

func avgSize(events [][]byte) int64 {
	var n int64
	for _, e := range events {
		n += int64(len(e))
	}
	return n / int64(len(events))
}

// builtinRules compiles the built-in packs; stateless keeps only the rules
// without a window.
func builtinRules(b *testing.B, stateless bool) *detect.RuleSet {
	b.Helper()
	cat, err := policies.LoadBuiltin()
	if err != nil {
		b.Fatalf("load built-in rules: %v", err)
	}
	if stateless {
		var windowed []string
		for _, r := range cat.Rules {
			if r.Window != nil {
				windowed = append(windowed, r.ID)
			}
		}
		if err := cat.Tune(nil, nil, windowed); err != nil {
			b.Fatalf("disable window rules: %v", err)
		}
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		b.Fatalf("compile built-in rules: %v", err)
	}
	return rs
}

// replayOnce runs a fresh engine over every event in batches, as vigil
// replay does (Run) or as vigil serve does (Process, with run false),
// flushes it and returns the number of alerts.
func replayOnce(b *testing.B, rs *detect.RuleSet, recs []ingest.Record, run bool) int {
	alerts := 0
	eng, err := detect.New(detect.Options{Rules: rs, Workers: runtime.GOMAXPROCS(0),
		Emit: func(detect.Alert) error { alerts++; return nil },
		OnReject: func(r ingest.Record, err error) {
			b.Fatalf("%s: generated event rejected: %v", r.Origin, err)
		}})
	if err != nil {
		b.Fatalf("new engine: %v", err)
	}
	ctx := context.Background()
	if run {
		if err := eng.Run(ctx, &memSource{recs: recs}, nil); err != nil {
			b.Fatalf("run: %v", err)
		}
	} else {
		for lo := 0; lo < len(recs); lo += benchBatch {
			batch := ingest.Batch{Records: recs[lo:min(lo+benchBatch, len(recs))]}
			if err := eng.Process(ctx, batch); err != nil {
				b.Fatalf("process: %v", err)
			}
		}
	}
	if err := eng.Flush(ctx); err != nil {
		b.Fatalf("flush: %v", err)
	}
	return alerts
}

// memSource serves records in batches of benchBatch.
type memSource struct{ recs []ingest.Record }

func (m *memSource) Read(context.Context) (ingest.Batch, error) {
	if len(m.recs) == 0 {
		return ingest.Batch{}, io.EOF
	}
	n := min(benchBatch, len(m.recs))
	b := ingest.Batch{Records: m.recs[:n]}
	m.recs = m.recs[n:]
	return b, nil
}

func (m *memSource) Close(context.Context) error { return nil }

func records(events [][]byte) []ingest.Record {
	recs := make([]ingest.Record, len(events))
	for i, e := range events {
		recs[i] = ingest.Record{Data: e, Origin: "generated"}
	}
	return recs
}

// runEngine reports events/s, ns/event and allocs/event of whole replays.
func runEngine(b *testing.B, rs *detect.RuleSet, run bool) {
	events := benchData()
	recs := records(events)
	b.SetBytes(avgSize(events) * int64(len(events)))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	n, alerts := 0, 0
	for b.Loop() {
		alerts = replayOnce(b, rs, recs, run)
		n += len(recs)
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	if alerts == 0 {
		b.Fatal("no alerts: the generated events should trip the built-in rules")
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n), "allocs/event")
	b.ReportMetric(float64(len(rs.Rules)), "rules")
	b.ReportMetric(float64(alerts)/float64(len(recs))*100, "alert%")
}

// BenchmarkReplay is the full engine (decode, match, windows, alerts) with
// the built-in rules, one op being a replay of benchEvents events: "run"
// as vigil replay drives it (Engine.Run), "process" batch by batch as vigil
// serve does.
func BenchmarkReplay(b *testing.B) {
	rs := builtinRules(b, false)
	b.Run("run", func(b *testing.B) { runEngine(b, rs, true) })
	b.Run("process", func(b *testing.B) { runEngine(b, rs, false) })
}

// BenchmarkMatch is decode and match without windows: the built-in rules
// that have no window.
func BenchmarkMatch(b *testing.B) {
	runEngine(b, builtinRules(b, true), true)
}

// BenchmarkDecode is the event decoder alone, one op being one event;
// with annotations as the engine decodes when a rule reads them.
func BenchmarkDecode(b *testing.B) {
	events := benchData()
	for _, ann := range []bool{false, true} {
		name := "fields"
		if ann {
			name = "annotations"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(avgSize(events))
			b.ReportAllocs()
			d := ingest.Decoder{Annotations: ann}
			i := 0
			for b.Loop() {
				if _, err := d.Decode(events[i]); err != nil {
					b.Fatalf("event %d: %v", i, err)
				}
				if i++; i == len(events) {
					i = 0
				}
			}
		})
	}
}
