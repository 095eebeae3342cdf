package ingest

import (
	"fmt"
	"testing"
	"time"
)

func TestDedup_Bounds(t *testing.T) {
	t0 := time.Unix(0, 0)
	d := NewDedup(time.Minute, 4)
	key := func(s string) Digest { return d.Digest([]byte(s)) }
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
		if got := d.Seen(key(c.key), t0.Add(c.at)); got != c.want {
			t.Errorf("step %d: Seen(%q) = %v, want %v", i, c.key, got, c.want)
		}
	}
	d.Forget(key("a"))
	if d.Seen(key("a"), t0.Add(103*time.Second)) {
		t.Error("forgotten key was a duplicate")
	}
	// The bound holds under many keys, and the newest half is remembered.
	for i := range 10000 {
		d.Seen(d.Digest(fmt.Append(nil, i)), t0.Add(110*time.Second))
		if d.Len() > 4 {
			t.Fatalf("Len %d over the bound after %d keys", d.Len(), i)
		}
	}
	if !d.Seen(d.Digest(fmt.Append(nil, 9999)), t0.Add(110*time.Second)) ||
		!d.Seen(d.Digest(fmt.Append(nil, 9998)), t0.Add(110*time.Second)) {
		t.Error("the newest keys were forgotten")
	}
}

func BenchmarkDedup(b *testing.B) {
	d := NewDedup(0, 0)
	now := time.Now()
	key := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := range b.N {
		key = fmt.Appendf(key[:0], "0f2c7a3e-%012d/ResponseComplete", i)
		d.Seen(d.Digest(key), now)
	}
}
