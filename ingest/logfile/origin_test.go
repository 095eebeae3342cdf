package logfile

import (
	"fmt"
	"testing"
)

// TestOrigin_CountsLines checks the origin counted up line by line against
// formatting, across carries and jumps.
func TestOrigin_CountsLines(t *testing.T) {
	r := &Reader{}
	for _, tc := range []struct {
		label string
		lines []int
	}{
		{"a.log", []int{1, 2, 3, 8, 9, 10, 11, 98, 99, 100, 101, 999, 1000, 1001, 5, 6}},
		{"b.log", []int{7, 8, 9, 10}},
	} {
		for _, n := range tc.lines {
			r.arena = make([]byte, 0, 64)
			if got, want := r.origin(tc.label, n), fmt.Sprintf("%s:%d", tc.label, n); got != want {
				t.Errorf("origin(%q, %d) = %q, want %q", tc.label, n, got, want)
			}
		}
	}
}
