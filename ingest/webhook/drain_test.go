package webhook

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest/memqueue"
)

// TestReceiver_DrainWhileServing drains receivers while clients post
// without pause: every request is answered 200 before Drain returns or gets
// 503, and nothing is published once Drain has returned. Several rounds
// give the race detector chances to see a request start while Drain waits.
func TestReceiver_DrainWhileServing(t *testing.T) {
	list, err := os.ReadFile(filepath.Join("testdata", "eventlist.json"))
	if err != nil {
		t.Fatal(err)
	}
	item := (&fixture{list: list}).items(t)[0]
	// A batch as large as the apiserver's keeps requests in progress most
	// of the time; the body is the same each time since de-duplication is
	// the reader's.
	const clients, batchSize = 2, 400
	batch := make([]any, batchSize)
	for j := range batch {
		e := maps.Clone(item)
		e["auditID"] = fmt.Sprintf("drain-%d", j)
		batch[j] = e
	}
	body := eventList(batch...)
	for round := range 10 {
		q := memqueue.New(memqueue.Options{MaxPending: 1 << 30})
		r, err := New(Options{Queue: q, DeadLetters: q})
		if err != nil {
			t.Fatal(err)
		}
		r.SetReady(true)
		srv := httptest.NewServer(r)
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			statuses = map[int]int{}
		)
		for range clients {
			wg.Go(func() {
				for {
					resp, err := srv.Client().Post(srv.URL+"/audit", "application/json", strings.NewReader(body))
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					mu.Lock()
					statuses[resp.StatusCode]++
					mu.Unlock()
					if resp.StatusCode != http.StatusOK {
						return
					}
				}
			})
		}
		time.Sleep(time.Duration(10+round) * time.Millisecond)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		if err := r.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		published := q.Pending()
		wg.Wait()
		srv.Close()
		if got := q.Pending(); got != published {
			t.Errorf("round %d: %d records published after Drain returned", round, got-published)
		}
		if statuses[http.StatusOK]*batchSize != published || statuses[http.StatusServiceUnavailable] != clients || len(statuses) != 2 {
			t.Errorf("round %d: answers %v with %d records published, want one 200 a batch and a 503 a client", round, statuses, published)
		}
	}
}
