package natsq

import "sync"

// backlogMax bounds the items Read holds besides the channel.
const backlogMax = 1024

// backlog holds the items Read took from the channel and has not returned
// yet, per partition in arrival order, so that a batch gathers one
// partition's messages from among the others'. Partitions take turns.
type backlog struct {
	mu    sync.Mutex
	parts map[int][]item
	order []int // partitions with items; the first has the turn
	n     int
}

func (b *backlog) add(it item) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.parts == nil {
		b.parts = map[int][]item{}
	}
	if len(b.parts[it.part]) == 0 {
		b.order = append(b.order, it.part)
	}
	b.parts[it.part] = append(b.parts[it.part], it)
	b.n++
}

func (b *backlog) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// turn is the partition whose items come next.
func (b *backlog) turn() (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.order) == 0 {
		return 0, false
	}
	return b.order[0], true
}

// pop takes the first item of partition p; with onlyMsg, only if it is a
// message.
func (b *backlog) pop(p int, onlyMsg bool) (item, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.parts[p]
	if len(l) == 0 || (onlyMsg && l[0].msg == nil) {
		return item{}, false
	}
	it := l[0]
	l[0] = item{}
	b.parts[p] = l[1:]
	b.n--
	if len(l) == 1 {
		delete(b.parts, p)
		b.remove(p)
	}
	return it, true
}

// rotate gives the turn to the next partition, p going last if it still
// has items.
func (b *backlog) rotate(p int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.parts[p]) > 0 {
		b.remove(p)
		b.order = append(b.order, p)
	}
}

func (b *backlog) remove(p int) {
	for i, o := range b.order {
		if o == p {
			b.order = append(b.order[:i], b.order[i+1:]...)
			return
		}
	}
}

// drain takes every item out, for Close.
func (b *backlog) drain() []item {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []item
	for _, l := range b.parts {
		out = append(out, l...)
	}
	b.parts, b.order, b.n = nil, nil, 0
	return out
}
