package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// lockedBuffer is written by the progress goroutine and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fixedSource is a Source serving fixed batches.
type fixedSource struct{ left []ingest.Batch }

func (s *fixedSource) Read(context.Context) (ingest.Batch, error) {
	if len(s.left) == 0 {
		return ingest.Batch{}, io.EOF
	}
	b := s.left[0]
	s.left = s.left[1:]
	return b, nil
}

func (s *fixedSource) Close(context.Context) error { return nil }

// readBatch reads one batch through m: 100 records of 99 bytes (100 with
// their newline).
func readBatch(t *testing.T, m *meter) {
	t.Helper()
	b := ingest.Batch{Records: make([]ingest.Record, 100)}
	for i := range b.Records {
		b.Records[i].Data = bytes.Repeat([]byte("x"), 99)
	}
	m.Source = &fixedSource{left: []ingest.Batch{b}}
	if _, err := m.Read(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestProgressBar_Modes(t *testing.T) {
	tests := []struct {
		name            string
		terminal, quiet bool
		total           int64
		// after 10s with half of the input read.
		want, notWant []string
	}{
		{name: "terminal", terminal: true, total: 20_000,
			want:    []string{"\r\033[K[============>           ]  50% 10.0 kB/20.0 kB 100 events, 10 events/s ETA 10s", "\r\033[K"},
			notWant: []string{"\n"}},
		{name: "pipe", total: 20_000,
			want:    []string{"vigil replay: 50% (10.0 kB of 20.0 kB), 100 events, 10 events/s, ETA 10s\n"},
			notWant: []string{"\r", "\033"}},
		{name: "pipe, size unknown",
			want:    []string{"vigil replay: 10.0 kB read, 100 events, 10 events/s\n"},
			notWant: []string{"%", "ETA"}},
		{name: "quiet terminal", terminal: true, quiet: true, total: 20_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var out lockedBuffer
				m := &meter{total: tt.total}
				p := newProgressBar(&out, tt.terminal, tt.quiet, m)
				readBatch(t, m)
				time.Sleep(10*time.Second + time.Millisecond)
				synctest.Wait()
				p.stop()
				p.stop()
				got := out.String()
				if tt.quiet && got != "" {
					t.Fatalf("quiet wrote %q", got)
				}
				for _, w := range tt.want {
					if !strings.Contains(got, w) {
						t.Errorf("output lacks %q:\n%q", w, got)
					}
				}
				for _, w := range tt.notWant {
					if strings.Contains(got, w) {
						t.Errorf("output holds %q:\n%q", w, got)
					}
				}
			})
		})
	}
}

func TestProgressBar_PipeLinesAreSparse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out lockedBuffer
		p := newProgressBar(&out, false, false, &meter{total: 1000})
		time.Sleep(35 * time.Second)
		synctest.Wait()
		p.stop()
		if n := strings.Count(out.String(), "\n"); n != 3 {
			t.Errorf("%d lines in 35s, want 3:\n%s", n, out.String())
		}
	})
}

func TestProgressBar_HoldsBelowFullOnUnderestimate(t *testing.T) {
	m := &meter{total: 5000}
	readBatch(t, m)
	p := &progressBar{m: m, start: time.Now(), terminal: true}
	if got := p.line(p.start.Add(time.Second)); !strings.Contains(got, " 99% ") || !strings.Contains(got, "ETA 0s") {
		t.Errorf("line %q", got)
	}
}

func TestInputSize(t *testing.T) {
	dir := t.TempDir()
	plain := bytes.Repeat([]byte(`{"kind":"Event"}`+"\n"), 1000)
	var gzBuf bytes.Buffer
	zw := gzip.NewWriter(&gzBuf)
	zw.Write(plain)
	zw.Close()
	for name, data := range map[string][]byte{"audit.log": plain, "audit-1.log.gz": gzBuf.Bytes(), ".hidden": plain} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n := int64(len(plain))
	tests := []struct {
		name  string
		paths []string
		want  int64
	}{
		{"plain file", []string{filepath.Join(dir, "audit.log")}, n},
		{"gzip file: its uncompressed size", []string{filepath.Join(dir, "audit-1.log.gz")}, n},
		{"directory: visible files", []string{dir}, 2 * n},
		{"standard input: unknown", []string{dir, "-"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := inputSize(tt.paths); got != tt.want {
				t.Errorf("inputSize = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestByteSizeAndThousands(t *testing.T) {
	for _, c := range []struct {
		n         int64
		size, sep string
	}{{999, "999 B", "999"}, {1000, "1.0 kB", "1,000"}, {1_234_567, "1.2 MB", "1,234,567"}, {2_500_000_000, "2.5 GB", "2,500,000,000"}} {
		if got := byteSize(c.n); got != c.size {
			t.Errorf("byteSize(%d) = %q, want %q", c.n, got, c.size)
		}
		if got := thousands(c.n); got != c.sep {
			t.Errorf("thousands(%d) = %q, want %q", c.n, got, c.sep)
		}
	}
}
