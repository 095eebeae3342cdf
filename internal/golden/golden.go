// Package golden compares test output with golden files and rewrites them
// when the tests run with -update.
package golden

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files instead of comparing with them")

// Check compares got with each file, or writes got to them with -update.
func Check(t testing.TB, got []byte, paths ...string) {
	t.Helper()
	for _, path := range paths {
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -update writes it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale (review, then go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
		}
	}
}
