package pipeline

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadCgroupLimit(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, content string
		want          int64
	}{
		{"v2 limit", "536870912\n", 536870912},
		{"v2 none", "max\n", 0},
		{"v1 none", "9223372036854771712\n", 0},
		{"garbage", "lots\n", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, []byte(c.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := readCgroupLimit(p); got != c.want {
				t.Errorf("readCgroupLimit(%q) = %d, want %d", c.content, got, c.want)
			}
		})
	}
	if got := readCgroupLimit(filepath.Join(dir, "missing")); got != 0 {
		t.Errorf("missing file: %d", got)
	}
	if got := ResolveMemoryLimit(1 << 30); got != 1<<30 {
		t.Errorf("a set limit is kept: %d", got)
	}
	if got := ResolveMemoryLimit(-1); got != 0 {
		t.Errorf("a negative limit is none: %d", got)
	}
}
