package envelope

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestWalk: a tree's rotated logs come first in time order, then the other
// files by path; hidden files and directories are passed over.
func TestWalk(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"b/audit-2026-11-22T07-00-00.log", "a/audit-2026-11-22T06-00-00.123.log", "a/x.json", "z.json", ".hidden/y.json", "a/.z.json"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i], _ = filepath.Rel(dir, got[i])
	}
	want := []string{"a/audit-2026-11-22T06-00-00.123.log", "b/audit-2026-11-22T07-00-00.log", "a/x.json", "z.json"}
	if !slices.Equal(got, want) {
		t.Errorf("walk = %q, want %q", got, want)
	}
}
