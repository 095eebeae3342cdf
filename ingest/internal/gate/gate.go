// Package gate lets calls in until it is shut, and then tells when the calls
// still inside have left: what a Close or Drain needs that must refuse new
// work and wait for the work in progress. A sync.WaitGroup does not fit, as
// its Add must not race its Wait.
package gate

import (
	"sync"
	"sync/atomic"
)

// Gate counts the calls inside. The zero Gate is open.
type Gate struct {
	mu     sync.Mutex
	inside int
	shut   bool
	empty  chan struct{} // closed once shut and inside is zero
	// shutFlag mirrors shut for IsShut, which probes call and which must
	// not wait behind Enter and Leave.
	shutFlag atomic.Bool
}

// Enter lets a call in and reports true, or reports false once Shut was
// called. Every call let in must Leave.
func (g *Gate) Enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return false
	}
	g.inside++
	return true
}

// Leave ends a call that Enter let in.
func (g *Gate) Leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inside--
	if g.inside < 0 {
		panic("gate: Leave without Enter")
	}
	if g.shut && g.inside == 0 {
		close(g.empty)
	}
}

// Shut lets no more calls in and returns a channel that is closed once the
// calls inside have left. It may be called more than once.
func (g *Gate) Shut() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.shut {
		g.shut = true
		g.shutFlag.Store(true)
		g.empty = make(chan struct{})
		if g.inside == 0 {
			close(g.empty)
		}
	}
	return g.empty
}

// IsShut reports whether Shut was called.
func (g *Gate) IsShut() bool { return g.shutFlag.Load() }
