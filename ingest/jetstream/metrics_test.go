package jetstream

import (
	"testing"
	"time"
)

// TestClusterGauges checks the queued count and the lag: zero when nothing
// waits, growing while events wait and nothing is taken, and the queued
// count never below zero (events left by an earlier run are taken too).
func TestClusterGauges(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := &clusterGauges{}
	g.taken.Store(t0.UnixNano())
	if got := g.lag(t0.Add(time.Minute)); got != 0 {
		t.Errorf("lag with nothing queued = %v", got)
	}
	g.queued.Add(800)
	if got := g.lag(t0.Add(time.Minute)); got != time.Minute {
		t.Errorf("lag of events waiting since the start = %v, want 1m", got)
	}
	g.take(400, t0.Add(50*time.Second))
	if got := g.lag(t0.Add(70 * time.Second)); got != 20*time.Second {
		t.Errorf("lag = %v, want 20s since the newest message taken was written", got)
	}
	if got := g.lag(t0.Add(100 * time.Second)); got != 50*time.Second {
		t.Errorf("lag while stuck = %v, want 50s", got)
	}
	g.take(1000, t0.Add(90*time.Second))
	if g.queued.Load() != 0 || g.lag(t0.Add(100*time.Second)) != 0 {
		t.Errorf("after taking more than was counted: queued %d, lag %v", g.queued.Load(), g.lag(t0.Add(100*time.Second)))
	}
}
