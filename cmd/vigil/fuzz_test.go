package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzConfig feeds the config loader and the serve and queue sections
// the documented examples (testdata/fuzz/FuzzConfig) and their mutations:
// they must never panic, and every refusal is a usage error (exit 2) that
// names the file. Inputs reading secret files (${file:...}) are skipped:
// the fuzzer must not read the machine's files.
//
//	go test ./cmd/vigil -run '^$' -fuzz FuzzConfig -fuzztime 60s
func FuzzConfig(f *testing.F) {
	path := filepath.Join(f.TempDir(), "config.yaml")
	f.Setenv("VIGIL_FUZZ_CLUSTER", "fuzz")
	f.Setenv("VIGIL_FUZZ_URL", "https://hooks.example.com/x")
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Contains(data, []byte("${file:")) {
			t.Skip("reads a file")
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(path)
		var ue usageError
		if err != nil {
			if !errors.As(err, &ue) || !bytes.Contains([]byte(err.Error()), []byte(path)) {
				t.Fatalf("config error %v is not a usage error naming the file", err)
			}
			return
		}
		if _, err := serveConfig(cfg); err != nil && !errors.As(err, &ue) {
			t.Fatalf("serve section error %v is not a usage error", err)
		}
	})
}
