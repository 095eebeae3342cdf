package ingest

import (
	"hash/maphash"
	"time"
)

// Dedup remembers recently seen keys in bounded memory: a queue's consumer
// side drops redelivered and re-sent events with it, and detection drops
// events and alerts it has already handled. Keys live in two generations:
// new keys go into the current one, which becomes the previous one
// (dropping the one before) once it holds half the key bound or, with a
// window, is a window old. A key is therefore remembered until half the key
// bound of new keys has come after it or the window has passed, whichever
// is first.
//
// It never deletes keys one by one and reuses the retired generation's map,
// which is already sized for a generation: it stays fast under a steady
// stream of new keys. With keys that hold no pointers (integers, Digest)
// its maps give the garbage collector nothing to scan. It is not safe for
// concurrent use.
type Dedup[K comparable] struct {
	gen       int   // keys a generation holds
	window    int64 // nanoseconds a generation lasts; 0: no time bound
	now       int64 // unix nanoseconds, set by Advance
	curStart  int64 // when cur took its first key
	cur, prev map[K]struct{}
}

// NewDedup returns a Dedup that holds at most maxKeys keys (at least 2)
// and, when window is positive, starts a new generation once the current
// one is window old by the clock Advance sets. Its maps grow as keys come,
// so a short-lived Dedup pays for what it uses.
func NewDedup[K comparable](maxKeys int, window time.Duration) *Dedup[K] {
	return &Dedup[K]{gen: max(maxKeys/2, 1), window: max(int64(window), 0),
		cur: map[K]struct{}{}, prev: map[K]struct{}{}}
}

// Advance sets the time of the keys that follow; it matters only with a
// window.
func (d *Dedup[K]) Advance(now time.Time) { d.now = now.UnixNano() }

// Seen reports whether key is remembered and remembers it if not. The zero
// key (a Digest of the empty key) is never a duplicate.
func (d *Dedup[K]) Seen(key K) bool {
	var zero K
	if key == zero {
		return false
	}
	if _, ok := d.cur[key]; ok {
		return true
	}
	if _, ok := d.prev[key]; ok {
		return true
	}
	if len(d.cur) >= d.gen || d.window > 0 && len(d.cur) > 0 && d.now-d.curStart >= d.window {
		d.prev, d.cur = d.cur, d.prev
		clear(d.cur)
	}
	if len(d.cur) == 0 {
		d.curStart = d.now
	}
	d.cur[key] = struct{}{}
	return false
}

// Forget removes key, so that it is not a duplicate when it comes again
// (a batch that failed is delivered again and must pass).
func (d *Dedup[K]) Forget(key K) {
	delete(d.cur, key)
	delete(d.prev, key)
}

// Len is the number of keys remembered.
func (d *Dedup[K]) Len() int { return len(d.cur) + len(d.prev) }

// Default bounds of a queue's de-duplication: the apiserver gives up on a
// batch after five attempts over about five minutes, and a queue
// redelivers within seconds.
const (
	DefaultDedupWindow  = 10 * time.Minute
	DefaultDedupMaxKeys = 1_000_000
)

// Digest is what a queue's Dedup keeps of an Entry.Key: 128 bits, so that
// two keys share a digest with a chance of about 2^-128 and no event is
// dropped as the duplicate of another. The empty key has the zero Digest.
type Digest [2]uint64

// Digester makes Digests. Its seeds are random per process, which is enough
// since digests are never stored.
type Digester struct{ seeds [2]maphash.Seed }

// NewDigester returns a Digester with fresh seeds.
func NewDigester() Digester {
	return Digester{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
}

// Digest returns the digest of key.
func (g Digester) Digest(key []byte) Digest {
	if len(key) == 0 {
		return Digest{}
	}
	return Digest{maphash.Bytes(g.seeds[0], key), maphash.Bytes(g.seeds[1], key)}
}
