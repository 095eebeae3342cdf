package qdedup

import (
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/ingest/internal/frames"
	"github.com/vigil-k8s/vigil/ingest/internal/qmetrics"
)

func TestSet(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := qmetrics.New(metrics.NewSet(), func() time.Time { return now }, func() int64 { return 0 })
	s := New(100, time.Minute, m)
	f := func(keys ...string) []frames.Frame {
		var fs []frames.Frame
		for _, k := range keys {
			fs = append(fs, frames.Frame{Key: []byte(k), Data: []byte("data " + k)})
		}
		return fs
	}
	recs, keys := s.Frames(f("a", "b", "a"), "c1", "o", now, nil, nil)
	if len(recs) != 2 || len(keys) != 2 || string(recs[1].Data) != "data b" || recs[0].Cluster != "c1" || recs[0].Origin != "o" {
		t.Fatalf("first message: %+v", recs)
	}
	if h := m.DedupHits("c1").Get(); h != 1 {
		t.Errorf("hits %d, want 1 (the repeated a)", h)
	}
	if _, ok := s.Admit([]byte("b"), "c2", now); ok {
		t.Error("b admitted twice")
	}
	s.Forget(keys)
	if _, ok := s.Admit([]byte("b"), "c2", now); !ok {
		t.Error("b not admitted again after Forget")
	}
	if _, dup := s.Seen([]byte("z"), now); dup {
		t.Error("z seen before it was")
	}
	if _, ok := s.Admit([]byte("z"), "c2", now); ok {
		t.Error("z admitted after a replay marked it")
	}
	if _, ok := s.Admit([]byte("a"), "c1", now.Add(3*time.Minute)); !ok {
		t.Error("a still held past the window")
	}
	if g := m.DedupKeys.Get(); g != float64(s.Len()) {
		t.Errorf("keys gauge %v, want %d", g, s.Len())
	}
}
