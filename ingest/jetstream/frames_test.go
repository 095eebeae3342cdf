package jetstream

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/internal/frames"
)

// TestQueue_Split checks that messages hold about frames.Target of frames,
// start again when the cluster changes, keep every entry in order, that an
// entry larger than the target goes alone, and that compression is used
// when it saves space and is undone by body.
func TestQueue_Split(t *testing.T) {
	q := &Queue{opts: Options{MaxPayload: DefaultMaxPayload}}
	var entries []ingest.Entry
	add := func(cluster string, n, size int, data func(i int) []byte) {
		for range n {
			i := len(entries)
			entries = append(entries, ingest.Entry{Key: fmt.Sprint("k", i),
				Record: ingest.Record{Cluster: cluster, Data: data(i)}})
		}
	}
	padded := func(size int) func(int) []byte {
		return func(i int) []byte { return []byte(fmt.Sprintf("%0*d", size, i)) }
	}
	random := func(i int) []byte {
		b := make([]byte, 3000)
		r := rand.NewChaCha8([32]byte{byte(i)})
		r.Read(b)
		return b
	}
	add("a", 400, 1000, padded(1000))
	add("a", 1, 300<<10, padded(300<<10))
	add("a", 10, 1000, padded(1000))
	add("b", 10, 1000, padded(1000))
	add("c", 3, 0, random)
	msgs, info := q.split(entries)
	var got []frames.Frame
	for i, m := range msgs {
		data, _, err := q.body(m.Data, m.Header)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if len(data) != info[i].raw {
			t.Errorf("message %d: %d bytes of frames, split said %d", i, len(data), info[i].raw)
		}
		compressed := m.Header.Get(HeaderEncoding) == frames.EncodingS2
		if cluster := m.Header.Get(HeaderCluster); compressed != (cluster != "c") {
			t.Errorf("message %d of cluster %s: compressed %v, want only compressible data compressed", i, cluster, compressed)
		}
		fs, err := frames.Decode(data, nil)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if len(fs) != info[i].events {
			t.Errorf("message %d holds %d entries, split said %d", i, len(fs), info[i].events)
		}
		if len(data) > frames.Target && len(fs) != 1 {
			t.Errorf("message %d holds %d bytes in %d entries, want at most %d or one entry", i, len(data), len(fs), frames.Target)
		}
		cluster := m.Header.Get(HeaderCluster)
		for _, f := range fs {
			if e := entries[len(got)]; e.Cluster != cluster {
				t.Errorf("entry %d of cluster %q in a message of %q", len(got), e.Cluster, cluster)
			}
			got = append(got, f)
		}
	}
	if len(got) != len(entries) {
		t.Fatalf("%d entries in the messages, want %d", len(got), len(entries))
	}
	for i, f := range got {
		if string(f.Key) != entries[i].Key || string(f.Data) != string(entries[i].Data) {
			t.Fatalf("entry %d: got key %s, want %s", i, f.Key, entries[i].Key)
		}
	}
	if len(msgs) < 400*1000/frames.Target+4 {
		t.Errorf("%d messages, want the 400 KB of cluster a split near %d bytes", len(msgs), frames.Target)
	}
}

// TestQueue_Body checks that a message body that cannot be read is an
// error, not a panic or silent loss.
func TestQueue_Body(t *testing.T) {
	q := &Queue{opts: Options{MaxPayload: DefaultMaxPayload}}
	for _, c := range []struct {
		name string
		h    nats.Header
		data []byte
	}{
		{"corrupt s2", nats.Header{HeaderEncoding: {frames.EncodingS2}}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02}},
		{"truncated s2", nats.Header{HeaderEncoding: {frames.EncodingS2}}, s2.Encode(nil, bytes.Repeat([]byte("audit "), 1000))[:20]},
		{"unknown encoding", nats.Header{HeaderEncoding: {"zstd"}}, []byte("x")},
		{"size over the payload limit", nats.Header{HeaderEncoding: {frames.EncodingS2}}, s2.Encode(nil, make([]byte, DefaultMaxPayload+1))},
	} {
		if _, _, err := q.body(c.data, c.h); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

// FuzzQueueBody feeds arbitrary stored bodies, plain or marked compressed,
// to what Read does with them: an error is fine, a panic or a hang is not.
func FuzzQueueBody(f *testing.F) {
	q := &Queue{opts: Options{MaxPayload: DefaultMaxPayload}}
	msgs, _ := q.split(entries("a", 0, 20, 200))
	f.Add(msgs[0].Data, true)
	f.Add(frames.Append(nil, ingest.Entry{Key: "k", Record: ingest.Record{Data: []byte(`{"auditID":"x"}`)}}), false)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1}, true)
	f.Fuzz(func(t *testing.T, data []byte, compressed bool) {
		h := nats.Header{}
		if compressed {
			h.Set(HeaderEncoding, frames.EncodingS2)
		}
		body, buf, err := q.body(data, h)
		if err != nil {
			return
		}
		if _, err := frames.Decode(body, nil); err != nil {
			return
		}
		q.putBuf(buf)
	})
}
