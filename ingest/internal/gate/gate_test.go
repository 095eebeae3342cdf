package gate

import (
	"sync"
	"testing"
	"time"
)

// TestGate shuts a gate while many goroutines go in and out: the channel
// closes once the last one inside has left, and none enters after that.
func TestGate(t *testing.T) {
	var g Gate
	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		inside, entered int
	)
	for range 8 {
		wg.Go(func() {
			for g.Enter() {
				mu.Lock()
				inside++
				entered++
				mu.Unlock()
				time.Sleep(time.Microsecond)
				mu.Lock()
				inside--
				mu.Unlock()
				g.Leave()
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	empty := g.Shut()
	select {
	case <-empty:
	case <-time.After(10 * time.Second):
		t.Fatal("the gate never emptied")
	}
	mu.Lock()
	stillInside, enteredBefore := inside, entered
	mu.Unlock()
	wg.Wait()
	if stillInside != 0 || entered != enteredBefore {
		t.Errorf("once empty: %d inside, %d entered later", stillInside, entered-enteredBefore)
	}
	if g.Enter() || !g.IsShut() {
		t.Error("a shut gate let a call in")
	}
	if again := g.Shut(); again != empty {
		t.Error("a second Shut returned another channel")
	}
}
