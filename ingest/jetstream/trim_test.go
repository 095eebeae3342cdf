package jetstream

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/ingest"
)

// randomEntries are entries that do not compress, so the stream fills at
// the rate they are published.
func randomEntries(from, n, size int) []ingest.Entry {
	out := make([]ingest.Entry, n)
	for i := range out {
		id := fmt.Sprintf("id-%06d", from+i)
		pad := make([]byte, size/2)
		rand.Read(pad)
		data := fmt.Sprintf(`{"auditID":%q,"stage":"ResponseComplete","pad":%q}`, id, hex.EncodeToString(pad))
		out[i] = ingest.Entry{Record: ingest.Record{Data: []byte(data)}, Key: ingest.DedupKey(id, "ResponseComplete")}
	}
	return out
}

// TestQueue_TrimsProcessedHistory publishes several times the stream's size
// while detection keeps up: processed history gives way, and no publish is
// refused for a stream full of events already processed.
func TestQueue_TrimsProcessedHistory(t *testing.T) {
	set := metrics.NewSet()
	q := open(t, t.TempDir(), func(o *Options) {
		o.MaxBytes = 4 << 20
		o.Retention = 24 * time.Hour
		o.TrimInterval = 20 * time.Millisecond
		o.Metrics = set
	})
	defer q.Close(t.Context())
	const per, size = 8, 32 << 10
	for round := range 60 { // 60 × 8 × 32 KiB: about 4× MaxBytes
		var err error
		for try := 0; ; try++ {
			if err = q.Publish(t.Context(), randomEntries(round*per, per, size)); !errors.Is(err, ingest.ErrFull) || try == 100 {
				break
			}
			time.Sleep(20 * time.Millisecond) // the next trim makes room
		}
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		readN(t, q, per, nil)
	}
	if n := set.GetOrCreateCounter("vigil_queue_trimmed_messages_total").Get(); n == 0 {
		t.Error("nothing was trimmed")
	}
}

// TestQueue_TrimKeepsUnprocessed fills the stream with events nobody read:
// publishing is refused, and every event is still there to be read.
func TestQueue_TrimKeepsUnprocessed(t *testing.T) {
	q := open(t, t.TempDir(), func(o *Options) {
		o.MaxBytes = 2 << 20
		o.TrimInterval = 20 * time.Millisecond
	})
	defer q.Close(t.Context())
	const per, size = 8, 32 << 10
	stored := 0
	for round := 0; ; round++ {
		err := q.Publish(t.Context(), randomEntries(round*per, per, size))
		if errors.Is(err, ingest.ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		stored += per
		if round == 100 {
			t.Fatal("the stream never filled")
		}
	}
	time.Sleep(100 * time.Millisecond) // several trim intervals
	// The refused publish may have stored some of its entries: the
	// caller retries them, and they are duplicates then.
	got := readN(t, q, stored, nil)
	if len(got) < stored {
		t.Errorf("read %d of %d stored events", len(got), stored)
	}
}
