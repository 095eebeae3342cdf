package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
)

func TestApp_buildSinks(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "alerts.jsonl")
	for _, tc := range []struct {
		name, config, output string
		stdoutLines          int
		fileLines            int
	}{
		{"default stdout", "", "", 1, 0},
		{"output file", "", out, 0, 1},
		{"configured sinks", "sinks:\n  - {name: out, type: stdout, min_severity: high}\n", "", 1, 0},
		{"filtered away", "sinks:\n  - {name: out, type: stdout, min_severity: critical}\n", "", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(out)
			path := filepath.Join(dir, "vigil.yaml")
			if err := os.WriteFile(path, []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			var stdout bytes.Buffer
			a := &app{stdout: &stdout, stderr: &stdout, logger: slog.New(slog.DiscardHandler)}
			d, err := a.buildSinks(t.Context(), cfg, sinkSetup{output: tc.output})
			if err != nil {
				t.Fatal(err)
			}
			al := detect.Alert{Rule: "r", Severity: detect.SeverityHigh, Time: time.Unix(0, 0).UTC(), Fingerprint: "f"}
			if err := d.Dispatch(t.Context(), al); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(stdout.String(), "\n"); n != tc.stdoutLines {
				t.Errorf("stdout has %d lines, want %d: %s", n, tc.stdoutLines, stdout.String())
			}
			b, _ := os.ReadFile(out)
			if n := bytes.Count(b, []byte("\n")); n != tc.fileLines {
				t.Errorf("output file has %d lines, want %d", n, tc.fileLines)
			}
			if tc.stdoutLines == 1 {
				var got detect.Alert
				if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || got.Rule != "r" {
					t.Errorf("stdout line: %v %+v", err, got)
				}
			}
		})
	}
}

func TestConfig_sinkConfig_usageError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.yaml")
	os.WriteFile(path, []byte("sinks:\n  - {name: a, type: webhook}\n"), 0o600)
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.sinkConfig()
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "sinks[0].url: required") {
		t.Errorf("sinkConfig = %v, want a usage error naming sinks[0].url", err)
	}
}
