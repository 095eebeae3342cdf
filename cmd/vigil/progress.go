package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// meter is an ingest.Source that counts what passes through it: records
// and their bytes, against an estimate of the input's size. onBatch, when
// set, sees each batch before the caller does (in the reading goroutine).
type meter struct {
	ingest.Source
	records, bytes atomic.Int64
	// total is the estimated size of the input as read (uncompressed), 0
	// when unknown (standard input).
	total   int64
	onBatch func(ingest.Batch)
}

// newMeter wraps src, whose input are the paths (files, directories, "-").
func newMeter(src ingest.Source, paths []string) *meter {
	return &meter{Source: src, total: inputSize(paths)}
}

func (m *meter) Read(ctx context.Context) (ingest.Batch, error) {
	b, err := m.Source.Read(ctx)
	n := 0
	for _, r := range b.Records {
		n += len(r.Data) + 1
	}
	m.bytes.Add(int64(n))
	m.records.Add(int64(len(b.Records)))
	if m.onBatch != nil && len(b.Records) > 0 {
		m.onBatch(b)
	}
	return b, err
}

// inputSize estimates the bytes the reader will see: file sizes, and for
// gzip files the uncompressed size their trailer records. A directory
// counts its regular, non-hidden files. 0 means unknown.
func inputSize(paths []string) int64 {
	var total int64
	for _, p := range paths {
		if p == "-" {
			return 0
		}
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		if !st.IsDir() {
			total += fileSize(p, st.Size())
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if info, err := e.Info(); err == nil && e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				total += fileSize(filepath.Join(p, e.Name()), info.Size())
			}
		}
	}
	return total
}

// fileSize is the size of a plain file, or the uncompressed size of a
// gzip file from its trailer (ISIZE, modulo 4 GiB). When the trailer is
// smaller than the file (a wrapped size), audit logs' usual ratio of ten
// is assumed.
func fileSize(path string, size int64) int64 {
	f, err := os.Open(path)
	if err != nil {
		return size
	}
	defer f.Close()
	var magic [2]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || magic != [2]byte{0x1f, 0x8b} || size < 18 {
		return size
	}
	var trailer [4]byte
	if _, err := f.ReadAt(trailer[:], size-4); err != nil {
		return size
	}
	if isize := int64(binary.LittleEndian.Uint32(trailer[:])); isize >= size {
		return isize
	}
	return 10 * size
}

// progressBar shows how far a replay got on standard error: a bar redrawn
// in place on a terminal, a plain line every pipeInterval otherwise.
type progressBar struct {
	w        io.Writer
	terminal bool
	m        *meter
	start    time.Time
	done     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

const (
	terminalInterval = 250 * time.Millisecond
	pipeInterval     = 10 * time.Second
	barWidth         = 24
)

// startProgress starts the progress display of m, or nothing with quiet.
func (a *app) startProgress(quiet bool, m *meter) *progressBar {
	return newProgressBar(a.stderr, a.stderrIsTerminal, quiet, m)
}

func newProgressBar(w io.Writer, terminal, quiet bool, m *meter) *progressBar {
	p := &progressBar{w: w, terminal: terminal, m: m, start: time.Now(), done: make(chan struct{})}
	if quiet {
		close(p.done)
		return p
	}
	every := pipeInterval
	if terminal {
		every = terminalInterval
	}
	p.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				if terminal {
					fmt.Fprint(p.w, "\r\033[K")
				}
				return
			case now := <-t.C:
				if terminal {
					fmt.Fprint(p.w, "\r\033[K"+p.line(now))
				} else {
					fmt.Fprintln(p.w, "vigil replay: "+p.line(now))
				}
			}
		}
	})
	return p
}

// stop clears the bar; it is safe to call more than once.
func (p *progressBar) stop() {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
		default:
			close(p.done)
		}
		p.wg.Wait()
	})
}

// line renders the progress at now.
func (p *progressBar) line(now time.Time) string {
	read, total, events := p.m.bytes.Load(), p.m.total, p.m.records.Load()
	el := max(now.Sub(p.start).Seconds(), 1e-3)
	rate := fmt.Sprintf("%s events, %s events/s", thousands(events), thousands(int64(float64(events)/el)))
	if total <= 0 {
		return fmt.Sprintf("%s read, %s", byteSize(read), rate)
	}
	// The total is an estimate: hold at 99% until the end.
	frac := min(float64(read)/float64(total), 0.99)
	eta := "ETA --"
	if read > 0 {
		left := time.Duration(float64(max(total-read, 0)) / (float64(read) / el) * float64(time.Second))
		eta = "ETA " + left.Round(time.Second).String()
	}
	if !p.terminal {
		return fmt.Sprintf("%.0f%% (%s of %s), %s, %s", frac*100, byteSize(read), byteSize(total), rate, eta)
	}
	fill := int(frac * barWidth)
	bar := strings.Repeat("=", fill) + ">" + strings.Repeat(" ", barWidth-fill)
	return fmt.Sprintf("[%s] %3.0f%% %s/%s %s %s", bar[:barWidth], frac*100, byteSize(read), byteSize(total), rate, eta)
}

// byteSize writes n bytes as people read it: 1.2 GB.
func byteSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, exp := float64(n)/unit, 0
	for v >= unit && exp < 4 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", v, "kMGTP"[exp])
}

// thousands writes n with thin separators: 1,204,331.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	var sb strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			sb.WriteByte(',')
		}
		sb.WriteRune(c)
	}
	return sb.String()
}
