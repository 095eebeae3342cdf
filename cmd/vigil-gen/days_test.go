package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestRun_Days writes whole days with -days and refuses a stolen-token
// day outside them.
func TestRun_Days(t *testing.T) {
	var out, stderr bytes.Buffer
	if err := run([]string{"-profile", "benign-day", "-rate", "0.05", "-days", "2", "-stolen-token-day", "2"}, &out, &stderr); err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
	if span := timeOf(t, lines[len(lines)-1]).Sub(timeOf(t, lines[0])); span < 47*time.Hour {
		t.Errorf("-days 2 spans %v", span)
	}
	if !bytes.Contains(out.Bytes(), []byte(`"userAgent":"python-requests/2.31.0"`)) {
		t.Error("no stolen-token burst")
	}
	err := run([]string{"-days", "2", "-stolen-token-day", "3"}, &out, &stderr)
	if err == nil || !strings.Contains(err.Error(), "stolen-token day 3") {
		t.Errorf("-stolen-token-day past -days: %v", err)
	}
}
