package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "audit.log")
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-n", "500", "-seed", "3", "-o", file}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v (stderr %q)", err, stderr.String())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("\n")); n != 500 {
		t.Errorf("%d lines in the file, want 500", n)
	}
	if stdout.Len() != 0 {
		t.Errorf("wrote %d bytes to stdout with -o", stdout.Len())
	}
	// Flags may come in any order; the same seed gives the same bytes on
	// standard output.
	stdout.Reset()
	if err := run([]string{"-seed", "3", "-n", "500"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stdout.Bytes(), data) {
		t.Error("the same seed wrote different logs to the file and to stdout")
	}
}

func TestRun_BadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-n", "-1"}, "-n -1"},
		{[]string{"-rate", "0"}, "-rate 0"},
		{[]string{"-nodes", "0"}, "-nodes 0"},
		{[]string{"-start", "yesterday"}, `-start "yesterday"`},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-o", filepath.Join(t.TempDir(), "missing", "dir", "x.log")}, "create output"},
		{[]string{"-bogus"}, "flag provided but not defined"},
		{[]string{"-profile", "quiet-week"}, `-profile: profile "quiet-week"`},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		err := run(tt.args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}

// TestRun_BenignDay writes the benign-day profile: its own default rate
// spreads the events over a day, and it differs from the default mix.
func TestRun_BenignDay(t *testing.T) {
	var day, mix, stderr bytes.Buffer
	if err := run([]string{"-profile", "benign-day", "-n", "2000"}, &day, &stderr); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-n", "2000"}, &mix, &stderr); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(day.Bytes(), mix.Bytes()) {
		t.Fatal("benign-day wrote the default mix")
	}
	lines := bytes.Split(bytes.TrimSpace(day.Bytes()), []byte("\n"))
	if len(lines) != 2000 {
		t.Fatalf("%d lines, want 2000", len(lines))
	}
	// At 1.5 events per second, 2000 events span over 20 minutes.
	first, last := timeOf(t, lines[0]), timeOf(t, lines[len(lines)-1])
	if span := last.Sub(first); span < 15*time.Minute {
		t.Errorf("2000 benign-day events span %v, want the profile's rate (about 22 minutes)", span)
	}
}

func timeOf(t *testing.T, line []byte) time.Time {
	t.Helper()
	var ev struct {
		T time.Time `json:"requestReceivedTimestamp"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatal(err)
	}
	return ev.T
}
