package detect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/auditgen"
)

// sliceSource serves records in batches of size, then io.EOF or err, and
// counts the acks.
type sliceSource struct {
	recs  []ingest.Record
	size  int
	err   error
	acked atomic.Int64
}

func (s *sliceSource) Read(context.Context) (ingest.Batch, error) {
	if len(s.recs) == 0 {
		if s.err != nil {
			return ingest.Batch{}, s.err
		}
		return ingest.Batch{}, io.EOF
	}
	n := min(s.size, len(s.recs))
	b := ingest.Batch{Records: s.recs[:n], Ack: func(context.Context, error) error { s.acked.Add(1); return nil }}
	s.recs = s.recs[n:]
	return b, nil
}

func (s *sliceSource) Close(context.Context) error { return nil }

func recordsOf(events [][]byte) []ingest.Record {
	out := make([]ingest.Record, len(events))
	for i, e := range events {
		out[i] = ingest.Record{Data: e, Origin: fmt.Sprintf("e:%d", i+1)}
	}
	return out
}

// alertLines are the alerts as comparable lines, in emit order.
func alertLines(t *testing.T, alerts []Alert) []string {
	t.Helper()
	var out []string
	for i := range alerts {
		b, err := alerts[i].AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// TestRun_SameAsProcess: Run raises the alerts Process raises, in the same
// order, whatever the workers and the batch size, and acks every batch.
func TestRun_SameAsProcess(t *testing.T) {
	rs := builtinRuleSet(t)
	var events [][]byte
	for _, p := range auditgen.Profiles {
		events = append(events, auditgen.Events(auditgen.Options{Seed: 3, Profile: p}, 4000)...)
	}
	// A bad line and a duplicate go the same way too.
	events = append(events, []byte("not json"), events[10])
	recs := recordsOf(events)

	var want []Alert
	var wantRejects []string
	e, err := New(Options{Rules: rs, Workers: 1, Emit: func(a Alert) error { want = append(want, a); return nil },
		OnReject: func(r ingest.Record, err error) { wantRejects = append(wantRejects, r.Origin) }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(recs); i += 500 {
		if err := e.Process(context.Background(), ingest.Batch{Records: recs[i:min(i+500, len(recs))]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 {
		t.Fatal("no alerts: the input must raise some")
	}
	for _, workers := range []int{1, 2, 5} {
		for _, size := range []int{1, 97, 4096} {
			if testing.Short() && size == 1 {
				continue
			}
			var got []Alert
			var rejects []string
			batches := 0
			e, err := New(Options{Rules: rs, Workers: workers, Emit: func(a Alert) error { got = append(got, a); return nil },
				OnReject: func(r ingest.Record, err error) { rejects = append(rejects, r.Origin) }})
			if err != nil {
				t.Fatal(err)
			}
			src := &sliceSource{recs: recs, size: size}
			if err := e.Run(context.Background(), src, func(ingest.Batch) error { batches++; return nil }); err != nil {
				t.Fatalf("workers %d, batch %d: %v", workers, size, err)
			}
			if err := e.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(alertLines(t, got), alertLines(t, want)) {
				t.Errorf("workers %d, batch %d: %d alerts differ from Process's %d", workers, size, len(got), len(want))
			}
			if !slices.Equal(rejects, wantRejects) {
				t.Errorf("workers %d, batch %d: rejects %v, want %v", workers, size, rejects, wantRejects)
			}
			if n := (len(recs) + size - 1) / size; batches != n || src.acked.Load() != int64(n) {
				t.Errorf("workers %d, batch %d: done %d, acked %d of %d batches", workers, size, batches, src.acked.Load(), n)
			}
		}
	}
}

// TestRun_Stops: a read error ends the run after the batches before it; an
// Emit or done error stops it; a cancelled context stops it.
func TestRun_Stops(t *testing.T) {
	rs := compileTestRules(t, windowRules)
	var events [][]byte
	for i := range 200 {
		events = append(events, ev(fmt.Sprintf("a%d", i), float64(i), fmt.Sprintf("u%d", i%3), "get", "pods", 403))
	}
	run := func(src ingest.Source, emit func(Alert) error, done func(ingest.Batch) error, ctx context.Context) (int, error) {
		n := 0
		e, err := New(Options{Rules: rs, Workers: 3, Emit: func(a Alert) error { n++; return emit(a) }})
		if err != nil {
			t.Fatal(err)
		}
		return n, e.Run(ctx, src, done)
	}
	ok := func(Alert) error { return nil }
	readErr := errors.New("disk gone")

	n, err := run(&sliceSource{recs: recordsOf(events), size: 16, err: readErr}, ok, nil, context.Background())
	if !errors.Is(err, readErr) || n == 0 {
		t.Errorf("read error: %d alerts, %v", n, err)
	}
	sinkErr := errors.New("sink down")
	if _, err := run(&sliceSource{recs: recordsOf(events), size: 16}, func(Alert) error { return sinkErr }, nil, context.Background()); !errors.Is(err, sinkErr) {
		t.Errorf("emit error: %v", err)
	}
	strict := errors.New("strict")
	batches := 0
	_, err = run(&sliceSource{recs: recordsOf(events), size: 16}, ok, func(ingest.Batch) error {
		if batches++; batches == 2 {
			return strict
		}
		return nil
	}, context.Background())
	if !errors.Is(err, strict) || batches != 2 {
		t.Errorf("done error: %v after %d batches", err, batches)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := run(&sliceSource{recs: recordsOf(events), size: 16}, ok, nil, ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// A source that blocks until the context ends.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := run(blockingSource{}, ok, nil, ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("blocked read: %v", err)
	}
}

type blockingSource struct{}

func (blockingSource) Read(ctx context.Context) (ingest.Batch, error) {
	<-ctx.Done()
	return ingest.Batch{}, ctx.Err()
}

func (blockingSource) Close(context.Context) error { return nil }
