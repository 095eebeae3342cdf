package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/jetstream"
)

func TestDeadLetters(t *testing.T) {
	dir := t.TempDir()
	q, err := jetstream.Open(t.Context(), jetstream.Options{Dir: filepath.Join(dir, "queue")})
	if err != nil {
		t.Fatal(err)
	}
	items := []ingest.DeadLetter{
		{Cluster: "prod", Reason: "bad_event: item is a JSON number, want an object", Data: []byte("42")},
		{Reason: "bad_event: item has no auditID", Data: []byte(`{"stage":"x"}`)},
	}
	if err := q.DeadLetter(t.Context(), items); err != nil {
		t.Fatal(err)
	}
	// The store is in use while the queue is open.
	if code, _, stderr := vigil(t, "", "deadletters", "--data-dir", dir); code != 1 || !strings.Contains(stderr, "in use by another vigil") {
		t.Errorf("while in use: exit %d, %s", code, stderr)
	}
	if err := q.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"deadletters", "--data-dir", dir}, 2},
		{[]string{"deadletters", "--data-dir", dir, "-n", "1"}, 1},
	} {
		code, stdout, stderr := vigil(t, "", c.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != c.want {
			t.Fatalf("%v: %d lines, want %d:\n%s", c.args, len(lines), c.want, stdout)
		}
		for i, l := range lines {
			var got deadLetterLine
			if err := json.Unmarshal([]byte(l), &got); err != nil {
				t.Fatalf("line %d: %v", i+1, err)
			}
			want := items[i]
			if got.Cluster != want.Cluster || got.Reason != want.Reason || got.Data != string(want.Data) ||
				got.Size != len(want.Data) || got.Truncated || got.Seq != uint64(i+1) || got.Time.IsZero() {
				t.Errorf("line %d: %+v, want the item %+v", i+1, got, want)
			}
		}
	}
	if code, _, stderr := vigil(t, "", "deadletters", "--data-dir", filepath.Join(dir, "nothing")); code != 2 || !strings.Contains(stderr, "no queue store") {
		t.Errorf("not a data dir: exit %d, %s", code, stderr)
	}
}
