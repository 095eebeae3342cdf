package pipeline

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/natstest"
	"github.com/vigil-k8s/vigil/ingest/natsq"
	"github.com/vigil-k8s/vigil/internal/auditgen"
)

// TestLoadSnapshot saves a partition's state half way through a window
// and loads it where a replica that gains the partition would: the window
// completes there; state that is too old, of another partition or not a
// saved state at all is not used.
func TestLoadSnapshot(t *testing.T) {
	q, err := natsq.Open(t.Context(), natsq.Options{URL: natstest.Server(t).ClientURL(), Member: "m", Replicas: 1, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	snaps, err := q.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Config{Rules: compileRules(t), Snapshots: snaps}, log: slog.New(slog.DiscardHandler), set: metrics.NewSet()}
	s.m.rejected = s.set.NewCounter("rejected")
	s.alerts.fp = map[string]bool{}
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	batch := func(ids ...string) ingest.Batch {
		var b ingest.Batch
		for i, id := range ids {
			b.Records = append(b.Records, ingest.Record{Data: []byte(event(id, "mallory", "list", "pods", 403, base.Add(time.Duration(i)*time.Second)))})
		}
		return b
	}
	first, err := s.newPartState(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.engine.Process(t.Context(), batch("m1", "m2")); err != nil {
		t.Fatal(err)
	}
	first.pos, first.clock = 42, eventClock{max: base.Add(time.Second), seenAt: time.Now()}
	now := time.Now()
	data, err := encodeSnapshot(first, now, false)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		stored []byte
		span   time.Duration
		used   bool
		err    string
	}{
		{name: "nothing saved"},
		{name: "saved", stored: data, span: time.Hour, used: true},
		{name: "older than the span", stored: data, span: time.Nanosecond},
		{name: "of another partition", stored: []byte(strings.Replace(string(data), `"partition":1`, `"partition":0`, 1)), span: time.Hour, err: "of partition 0"},
		{name: "not a saved state", stored: []byte("{}\n{}"), span: time.Hour, err: "version 0"},
		{name: "windows out of range", stored: []byte(strings.Replace(string(data), `"windows":`, `"windows":-`, 1)), span: time.Hour, err: "window state of -"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.stored != nil {
				if err := snaps.Save(t.Context(), 1, tc.stored); err != nil {
					t.Fatal(err)
				}
			}
			ps, err := s.newPartState(1)
			if err != nil {
				t.Fatal(err)
			}
			used, err := s.loadSnapshot(t.Context(), ps, tc.span)
			if used != tc.used || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("loadSnapshot = %v, %v; want %v, error %q", used, err, tc.used, tc.err)
			}
			if !used {
				return
			}
			if ps.pos != 42 || !ps.clock.max.Equal(base.Add(time.Second)) {
				t.Errorf("restored position %d, clock %v; want 42, %v", ps.pos, ps.clock.max, base.Add(time.Second))
			}
			// The third refusal completes the window of three begun before the save.
			s.alerts.pending = nil
			b := batch("m1", "m2", "m3")
			b.Records = b.Records[2:]
			if err := ps.engine.Process(t.Context(), b); err != nil {
				t.Fatal(err)
			}
			alerts := s.alerts.pending
			if len(alerts) != 1 || alerts[0].Rule != "forbidden-burst" || alerts[0].Count != 3 {
				t.Errorf("after the restore, one more refusal raised %+v, want forbidden-burst of 3", alerts)
			}
		})
	}
}

// TestPartitionSnapshot_KeepsBaselines: the replica that gains a partition
// continues its first-seen baselines from the saved state, even one too old
// for its windows, so the stolen token of day 9 is seen as new there as in
// one run; without them the partition would learn again and stay silent.
func TestPartitionSnapshot_KeepsBaselines(t *testing.T) {
	rs := firstSeenRules(t)
	learn, burst, _ := nineDays(t)
	q, err := natsq.Open(t.Context(), natsq.Options{URL: natstest.Server(t).ClientURL(), Member: "m", Replicas: 1, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	snaps, err := q.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Config{Rules: rs, Snapshots: snaps}, log: slog.New(slog.DiscardHandler), set: metrics.NewSet()}
	s.m.rejected = s.set.NewCounter("rejected")
	s.alerts.fp = map[string]bool{}
	process := func(ps *partState, events [][]byte) {
		t.Helper()
		for i := 0; i < len(events); i += 1000 {
			var b ingest.Batch
			for _, ev := range events[i:min(i+1000, len(events))] {
				b.Records = append(b.Records, ingest.Record{Data: ev})
			}
			if err := ps.engine.Process(t.Context(), b); err != nil {
				t.Fatal(err)
			}
		}
	}
	first, err := s.newPartState(0)
	if err != nil {
		t.Fatal(err)
	}
	process(first, learn)
	first.pos = uint64(len(learn))
	if len(s.alerts.pending) != 0 {
		t.Fatalf("days 1 to 8 raised %d alerts", len(s.alerts.pending))
	}
	data, err := encodeSnapshot(first, time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := snaps.Save(t.Context(), 0, data); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		span time.Duration
	}{{"windows used", time.Hour}, {"windows too old", time.Nanosecond}} {
		t.Run(tc.name, func(t *testing.T) {
			s.alerts.pending, s.alerts.fp = nil, map[string]bool{}
			ps, err := s.newPartState(0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.loadSnapshot(t.Context(), ps, tc.span); err != nil {
				t.Fatal(err)
			}
			process(ps, burst)
			var msgs []string
			for _, a := range s.alerts.pending {
				msgs = append(msgs, a.Rule+": "+a.Message)
				if a.User.Username != auditgen.StolenTokenUser {
					t.Errorf("alert not about the stolen token: %s", a.Message)
				}
			}
			if n := len(msgs); n < 1 || n > 3 {
				t.Errorf("day 9 after the hand-over raised %d first-seen alerts, want 1 to 3:\n  %s", n, strings.Join(msgs, "\n  "))
			}
		})
	}
}
