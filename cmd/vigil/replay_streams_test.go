package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/vigil-k8s/vigil/internal/auditgen"
)

// TestReplay_AlertStreamsUnchanged replays the real captures and generated
// logs with a frozen copy of the built-in rules (testdata/streams/rules.yaml.gz,
// the packs as they were when the goldens were written) and requires the
// alert stream, sorted, byte for byte as the goldens hold it: what the
// engine decided and how the alerts read and encode, whatever the number
// of workers. go test -update rewrites the goldens.
func TestReplay_AlertStreamsUnchanged(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, gunzipFile(t, filepath.Join("testdata", "streams", "rules.yaml.gz")), 0o644); err != nil {
		t.Fatal(err)
	}
	inputs := []struct {
		name, path string
		profile    string
		n          int
	}{
		{name: "run2", path: filepath.Join("..", "..", "testdata", "real-apiserver", "run2", "audit.log.gz")},
		{name: "run5", path: filepath.Join("..", "..", "testdata", "real-apiserver", "run5", "audit.log.gz")},
		{name: "mix7-30k", profile: auditgen.ProfileMix, n: 30_000},
		{name: "benign7-30k", profile: auditgen.ProfileBenignDay, n: 30_000},
		{name: "attack7-20k", profile: auditgen.ProfileAttackHeavy, n: 20_000},
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			path := in.path
			if path == "" {
				path = filepath.Join(dir, in.name+".log")
				f, err := os.Create(path)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := auditgen.Write(f, auditgen.Options{Seed: 7, Profile: in.profile}, in.n); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
			golden := filepath.Join("testdata", "streams", in.name+".jsonl.gz")
			for _, workers := range []int{1, 3} {
				out := filepath.Join(dir, in.name+"-"+strconv.Itoa(workers)+".alerts.jsonl")
				code, _, stderr := vigil(t, "", "replay", "-q", "--no-builtin", "--rules", rules,
					"--workers", strconv.Itoa(workers), "-o", out, path)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				got := sortedLines(t, out)
				if f := flag.Lookup("update"); f != nil && f.Value.String() == "true" {
					writeGzip(t, golden, got)
					continue
				}
				want := gunzipFile(t, golden)
				if !bytes.Equal(got, want) {
					t.Fatalf("%d workers: the alerts differ from %s:\n%s", workers, golden, firstDifference(got, want))
				}
			}
		})
	}
}

func sortedLines(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	slices.SortFunc(lines, bytes.Compare)
	return bytes.Join(lines, nil)
}

func gunzipFile(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeGzip(t *testing.T, path string, data []byte) {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// firstDifference shows the first line where got and want part.
func firstDifference(got, want []byte) string {
	g, w := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	for i := range min(len(g), len(w)) {
		if !bytes.Equal(g[i], w[i]) {
			return "line " + strconv.Itoa(i+1) + ":\ngot:  " + string(g[i]) + "\nwant: " + string(w[i])
		}
	}
	return "got " + strconv.Itoa(len(g)) + " lines, want " + strconv.Itoa(len(w))
}
