package file_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/file"
	"github.com/vigil-k8s/vigil/sinks/sinktest"
)

func TestSink_Send_stdout(t *testing.T) {
	var buf bytes.Buffer
	s, err := file.New(file.Config{Name: "out"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	in := sinktest.Alerts()
	if _, err := s.Send(t.Context(), in...); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	n := 0
	for sc.Scan() {
		var a detect.Alert
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		if a.Fingerprint != in[n].Fingerprint {
			t.Errorf("line %d: fingerprint %s, want %s", n, a.Fingerprint, in[n].Fingerprint)
		}
		n++
	}
	if n != len(in) || s.String() != "stdout[out]" {
		t.Errorf("%d lines from %s, want %d from stdout[out]", n, s, len(in))
	}
}

func TestSink_Send_rotates(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "alerts.jsonl")
	s, err := file.New(file.Config{Name: "f", Path: p, MaxSizeMB: 1, MaxBackups: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := sinktest.Alerts()[1]
	line, _ := json.Marshal(a)
	perFile := (1 << 20) / (len(line) + 1)
	total := perFile*3 + 10 // fills three files and starts a fourth
	for range total {
		if _, err := s.Send(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}
	lines := 0
	for _, name := range []string{"alerts.jsonl", "alerts.jsonl.1", "alerts.jsonl.2"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 1<<20 {
			t.Errorf("%s is %d bytes, over the 1 MiB limit", name, len(b))
		}
		lines += bytes.Count(b, []byte("\n"))
	}
	if _, err := os.Stat(filepath.Join(dir, "alerts.jsonl.3")); !os.IsNotExist(err) {
		t.Errorf("alerts.jsonl.3 exists beyond max_backups: %v", err)
	}
	// The oldest file was dropped: what remains is the newest lines.
	if want := perFile*2 + 10; lines != want {
		t.Errorf("%d lines kept, want %d", lines, want)
	}
}

func TestConfig_Validate(t *testing.T) {
	if err := (file.Config{MaxSizeMB: 5}).Validate(); err == nil {
		t.Error("rotation of stdout accepted")
	}
	if err := (file.Config{Path: "x", MaxBackups: -1}).Validate(); err == nil {
		t.Error("negative max_backups accepted")
	}
}
