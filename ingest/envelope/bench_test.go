package envelope

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

// BenchmarkReplay reads the same events raw and in each envelope and runs
// the built-in rules over them, as vigil replay does: go test -bench
// Replay -run '^$' ./ingest/envelope/ (events/s per format; the envelopes
// must stay above 70% of raw).
func BenchmarkReplay(b *testing.B) {
	rs := builtinRules(b)
	var events [][]byte
	for copyN := range 4 {
		for _, run := range []string{"run2", "run5"} {
			for _, e := range recording(b, run) {
				events = append(events, bytes.Replace(e, []byte(`"auditID":"`), []byte(fmt.Sprintf(`"auditID":"%d-`, copyN)), 1))
			}
		}
	}
	dir := b.TempDir()
	raw := filepath.Join(dir, "audit.log.gz")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for _, e := range events {
		zw.Write(e)
		zw.Write([]byte{'\n'})
	}
	zw.Close()
	os.WriteFile(raw, buf.Bytes(), 0o644)
	paths := map[Format]string{Audit: raw}
	for _, p := range Providers {
		paths[p] = filepath.Join(dir, string(p)+".json.gz")
		var out bytes.Buffer
		zw := gzip.NewWriter(&out)
		if p == EKS {
			writeEnvelope(b, paths[p], p, EncodeOptions{}, events) // gzip members already
			continue
		}
		enc, _ := NewEncoder(zw, p, EncodeOptions{})
		for _, e := range events {
			enc.Write(e)
		}
		enc.Close()
		zw.Close()
		os.WriteFile(paths[p], out.Bytes(), 0o644)
	}
	for _, f := range []Format{Audit, EKS, GKE, AKS} {
		b.Run(string(f), func(b *testing.B) {
			n := 0
			cpu0 := cpuTime()
			for b.Loop() {
				r, err := Open([]string{paths[f]}, nil, Options{})
				if err != nil {
					b.Fatal(err)
				}
				n += replayCount(b, rs, r)
			}
			// CPU time per event says more than wall time on a shared
			// machine.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(n), "cpu-ns/event")
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		})
	}
	// Reading alone: what the envelope costs beside detection.
	for _, f := range []Format{Audit, EKS, GKE, AKS} {
		b.Run(string(f)+"-read", func(b *testing.B) {
			n := 0
			cpu0 := cpuTime()
			for b.Loop() {
				r, err := Open([]string{paths[f]}, nil, Options{})
				if err != nil {
					b.Fatal(err)
				}
				n += readCount(b, r)
			}
			// CPU time per event says more than wall time on a shared
			// machine.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(n), "cpu-ns/event")
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// cpuTime is the process's user and system time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// readCount reads a source to its end and returns the events read.
func readCount(b *testing.B, src ingest.Source) int {
	ctx := context.Background()
	n := 0
	for {
		batch, err := src.Read(ctx)
		n += len(batch.Records)
		if batch.Ack != nil {
			batch.Ack(ctx, nil)
		}
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// replayCount runs detection over a source and returns the events read.
func replayCount(b *testing.B, rs *detect.RuleSet, src ingest.Source) int {
	eng, err := detect.New(detect.Options{Rules: rs, Emit: func(detect.Alert) error { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	n := 0
	if err := eng.Run(ctx, src, func(batch ingest.Batch) error { n += len(batch.Records); return nil }); err != nil {
		b.Fatal(err)
	}
	if err := eng.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	return n
}
