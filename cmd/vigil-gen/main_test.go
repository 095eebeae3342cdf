package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		err := run(tt.args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}
