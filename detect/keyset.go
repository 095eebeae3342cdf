package detect

// keySet remembers recent uint64 keys (hashes) in bounded memory, as
// ingest.Dedup does without a window: new keys go into the current
// generation, which becomes the previous one (dropping the one before) once
// it holds gen keys. The engine asks it about every event and every match;
// its tables are open-addressed arrays of keys, which cost a cache miss
// where a map costs two.
type keySet struct {
	gen       int
	cur, prev hashTable
}

func newKeySet(maxKeys int) *keySet {
	s := &keySet{gen: max(maxKeys/2, 1)}
	// A table that will hold a generation's keys at most half full.
	full := 1
	for full < 2*s.gen {
		full *= 2
	}
	s.cur.full, s.prev.full = full, full
	return s
}

// Seen reports whether key is remembered and remembers it if not. The zero
// key is never a duplicate.
func (s *keySet) Seen(key uint64) bool {
	if key == 0 {
		return false
	}
	if s.Has(key) {
		return true
	}
	s.cur.add(key)
	return false
}

// Has reports whether key is remembered, and starts a new generation
// when Seen would have: it is Seen followed by Forget when key is not
// remembered, without storing it.
func (s *keySet) Has(key uint64) bool {
	if key == 0 {
		return false
	}
	if s.cur.has(key) || s.prev.has(key) {
		return true
	}
	if s.cur.n >= s.gen {
		s.prev, s.cur = s.cur, s.prev
		s.cur.clear()
	}
	return false
}

// Forget removes key.
func (s *keySet) Forget(key uint64) {
	s.cur.del(key)
	s.prev.del(key)
}

// Len is the number of keys remembered.
func (s *keySet) Len() int { return s.cur.n + s.prev.n }

// hashTable is a set of non-zero keys with linear probing, at most half
// full; it grows as keys come.
type hashTable struct {
	slots []uint64
	n     int
	// full is the size the table ends at: once it is busy it grows there
	// in one step rather than rehashing its keys at every doubling.
	full int
}

func (t *hashTable) index(key uint64) int {
	// Keys are hashes already: mixing spreads their high bits over the
	// index bits.
	return int((key * 0x9E3779B97F4A7C15) >> 32 & uint64(len(t.slots)-1))
}

func (t *hashTable) has(key uint64) bool {
	if t.n == 0 {
		return false
	}
	mask := len(t.slots) - 1
	for i := t.index(key); ; i = (i + 1) & mask {
		switch t.slots[i] {
		case key:
			return true
		case 0:
			return false
		}
	}
}

func (t *hashTable) add(key uint64) {
	if 2*(t.n+1) > len(t.slots) {
		t.grow()
	}
	mask := len(t.slots) - 1
	i := t.index(key)
	for t.slots[i] != 0 {
		if t.slots[i] == key {
			return
		}
		i = (i + 1) & mask
	}
	t.slots[i] = key
	t.n++
}

func (t *hashTable) grow() {
	old := t.slots
	size := max(2*len(old), 4096)
	if t.n >= busyKeys && t.full > size {
		size = t.full
	}
	t.slots = make([]uint64, size)
	t.n = 0
	for _, k := range old {
		if k != 0 {
			t.add(k)
		}
	}
}

// busyKeys is the number of keys after which a table grows to its full
// size.
const busyKeys = 1 << 14

// del removes key, moving back the keys after it that its slot displaced
// (no tombstones: lookups stay short).
func (t *hashTable) del(key uint64) {
	if t.n == 0 || key == 0 {
		return
	}
	mask := len(t.slots) - 1
	i := t.index(key)
	for t.slots[i] != key {
		if t.slots[i] == 0 {
			return
		}
		i = (i + 1) & mask
	}
	t.n--
	for j := (i + 1) & mask; t.slots[j] != 0; j = (j + 1) & mask {
		// The key at j may move to the hole at i if its home slot is not
		// in (i, j] (cyclically).
		home := t.index(t.slots[j])
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = 0
}

// clear empties the table, keeping its room.
func (t *hashTable) clear() {
	clear(t.slots)
	t.n = 0
}
