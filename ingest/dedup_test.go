package ingest

import (
	"fmt"
	"testing"
	"time"
)

func TestDedup_Window(t *testing.T) {
	t0 := time.Unix(0, 0)
	g := NewDigester()
	d := NewDedup[Digest](4, time.Minute)
	key := func(s string) Digest { return g.Digest([]byte(s)) }
	for i, c := range []struct {
		key  string
		at   time.Duration
		want bool
	}{
		{"a", 0, false}, {"a", time.Second, true}, {"", 0, false}, {"", 0, false},
		{"b", 2 * time.Second, false},
		{"c", 3 * time.Second, false}, // the generation of a and b was full: a new one
		{"a", 4 * time.Second, true},
		{"d", 5 * time.Second, false},
		{"e", 6 * time.Second, false}, // a new generation: a and b are dropped
		{"a", 7 * time.Second, false},
		{"a", 8 * time.Second, true},
		{"f", 40 * time.Second, false}, // full again
		{"a", 41 * time.Second, true},
		{"a", 99 * time.Second, true},   // f's generation is not yet a window old
		{"h", 101 * time.Second, false}, // it is: a new generation, and a is dropped
		{"a", 102 * time.Second, false},
	} {
		d.Advance(t0.Add(c.at))
		if got := d.Seen(key(c.key)); got != c.want {
			t.Errorf("step %d: Seen(%q) = %v, want %v", i, c.key, got, c.want)
		}
	}
	d.Forget(key("a"))
	if d.Seen(key("a")) {
		t.Error("forgotten key was a duplicate")
	}
	// The bound holds under many keys, and the newest half is remembered.
	for i := range 10000 {
		d.Seen(g.Digest(fmt.Append(nil, i)))
		if d.Len() > 4 {
			t.Fatalf("Len %d over the bound after %d keys", d.Len(), i)
		}
	}
	if !d.Seen(g.Digest(fmt.Append(nil, 9999))) || !d.Seen(g.Digest(fmt.Append(nil, 9998))) {
		t.Error("the newest keys were forgotten")
	}
}

// TestDedup_Count checks the bound by count alone: a key is remembered for
// at least half the key bound of insertions after it, and at most the key
// bound, whatever the clock says.
func TestDedup_Count(t *testing.T) {
	const half = 100
	d := NewDedup[uint64](2*half, 0)
	d.Advance(time.Unix(1e9, 0))
	for k := uint64(1); k <= 10*half; k++ {
		if d.Seen(k) {
			t.Fatalf("new key %d was a duplicate", k)
		}
		for back := uint64(0); back < min(k, half); back++ {
			if !d.Seen(k - back) {
				t.Fatalf("key %d forgotten after %d insertions", k-back, back)
			}
		}
		if d.Len() > 2*half {
			t.Fatalf("Len %d over the bound", d.Len())
		}
	}
	if d.Seen(1) {
		t.Error("key 1 remembered past the bound")
	}
}

func BenchmarkDedup(b *testing.B) {
	g := NewDigester()
	d := NewDedup[Digest](DefaultDedupMaxKeys, DefaultDedupWindow)
	d.Advance(time.Now())
	key := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := range b.N {
		key = fmt.Appendf(key[:0], "0f2c7a3e-%012d/ResponseComplete", i)
		d.Seen(g.Digest(key))
	}
}
