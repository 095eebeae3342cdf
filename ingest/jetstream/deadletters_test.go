package jetstream

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

func TestQueue_DeadLetterAndFingerprints(t *testing.T) {
	q := open(t, t.TempDir(), nil)
	defer q.Close(context.Background())
	if err := q.DeadLetter(t.Context(), []ingest.DeadLetter{{Cluster: "a", Reason: "malformed", Data: []byte("{")}}); err != nil {
		t.Fatal(err)
	}
	s, err := q.js.Stream(t.Context(), DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "{" || m.Header.Get(HeaderReason) != "malformed" {
		t.Errorf("dead letter = %q reason %q", m.Data, m.Header.Get(HeaderReason))
	}
	fps, err := q.Fingerprints(t.Context(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := fps.Has(t.Context(), "abc"); err != nil || ok {
		t.Fatalf("Has before Add = %v, %v", ok, err)
	}
	if err := fps.Add(t.Context(), "abc", []byte("r")); err != nil {
		t.Fatal(err)
	}
	if ok, err := fps.Has(t.Context(), "abc"); err != nil || !ok {
		t.Fatalf("Has after Add = %v, %v", ok, err)
	}
}

// TestReadDeadLetters stores refused items, one over the payload limit,
// and reads them back once the queue is closed (not while it is open).
func TestReadDeadLetters(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, func(o *Options) { o.MaxPayload = 64 << 10 })
	big := bytes.Repeat([]byte("x"), 100<<10)
	items := []ingest.DeadLetter{
		{Cluster: "prod", Reason: "malformed: unexpected end of JSON", Data: []byte(`{"auditID":`)},
		{Cluster: "prod", Reason: "too_large: event is 102400 bytes", Data: big},
		{Reason: "wrong_kind: kind \"Pod\"", Data: []byte(`{"kind":"Pod"}`)},
	}
	if err := q.DeadLetter(t.Context(), items); err != nil {
		t.Fatal(err)
	}
	if err := ReadDeadLetters(t.Context(), dir, 0, func(StoredDeadLetter) error { return nil }); err == nil {
		t.Error("read the dead letters of a store in use")
	}
	if err := q.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	var got []StoredDeadLetter
	if err := ReadDeadLetters(t.Context(), dir, 0, func(d StoredDeadLetter) error {
		got = append(got, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(items) {
		t.Fatalf("read %d dead letters, want %d", len(got), len(items))
	}
	for i, d := range got {
		want := items[i]
		if d.Cluster != want.Cluster || d.Reason != want.Reason || d.Size != len(want.Data) || d.Time.IsZero() {
			t.Errorf("item %d: %+v, want cluster %q reason %q size %d", i, d, want.Cluster, want.Reason, len(want.Data))
		}
		if len(want.Data) < 60<<10 && string(d.Data) != string(want.Data) {
			t.Errorf("item %d: data %q, want %q", i, d.Data, want.Data)
		}
	}
	if len(got[1].Data) >= len(big) {
		t.Errorf("the item over the limit was stored whole (%d bytes)", len(got[1].Data))
	}
	n := 0
	if err := ReadDeadLetters(t.Context(), dir, 2, func(StoredDeadLetter) error { n++; return nil }); err != nil || n != 2 {
		t.Errorf("limit 2: read %d, %v", n, err)
	}
}
