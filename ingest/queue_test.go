package ingest

import (
	"fmt"
	"testing"
	"time"
)

func TestDedup_Bounds(t *testing.T) {
	t0 := time.Unix(0, 0)
	d := NewDedup(time.Minute, 3)
	for i, c := range []struct {
		key  string
		at   time.Duration
		want bool
	}{
		{"a", 0, false}, {"a", time.Second, true}, {"", 0, false}, {"", 0, false},
		{"b", 2 * time.Second, false}, {"c", 3 * time.Second, false},
		{"d", 4 * time.Second, false}, // evicts a (max keys)
		{"a", 5 * time.Second, false},
		{"c", 70 * time.Second, false}, // expired
	} {
		if got := d.Seen(c.key, t0.Add(c.at)); got != c.want {
			t.Errorf("step %d: Seen(%q) = %v, want %v", i, c.key, got, c.want)
		}
	}
	if d.Len() > 3 {
		t.Errorf("Len = %d, over the bound", d.Len())
	}
	d.Forget("c")
	if d.Seen("c", t0.Add(71*time.Second)) {
		t.Error("forgotten key was a duplicate")
	}
	// The bound holds under many keys.
	for i := range 10000 {
		d.Seen(fmt.Sprint(i), t0.Add(72*time.Second))
	}
	if d.Len() != 3 || len(d.fifo)-d.head > 3 {
		t.Errorf("Len %d, fifo %d after many keys", d.Len(), len(d.fifo)-d.head)
	}
}
