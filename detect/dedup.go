package detect

// dedupSet remembers recently seen 64-bit keys in two generations: when the
// current one is full it becomes the previous one. A key is remembered for at
// least size and at most 2×size insertions, in bounded memory.
type dedupSet struct {
	size      int
	cur, prev map[uint64]struct{}
}

// newDedupSet makes an empty set; maps grow as keys come, so a short-lived
// engine (fixtures) pays for what it uses.
func newDedupSet(size int) *dedupSet {
	return &dedupSet{size: size, cur: map[uint64]struct{}{}, prev: map[uint64]struct{}{}}
}

// seen reports whether k was added before, and adds it.
func (d *dedupSet) seen(k uint64) bool {
	if _, ok := d.cur[k]; ok {
		return true
	}
	if _, ok := d.prev[k]; ok {
		return true
	}
	if len(d.cur) >= d.size {
		// The retired map is reused: its memory is already sized for a
		// generation, and fresh memory costs page faults.
		d.prev, d.cur = d.cur, d.prev
		clear(d.cur)
	}
	d.cur[k] = struct{}{}
	return false
}
