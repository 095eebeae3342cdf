package queuetest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

func testPublishReadAck(t *testing.T, open Opener) {
	q := openDefault(t, open).Queue
	in := slices.Concat(entries("a", 0, 20), entries("a", 20, 20), entries("a", 40, 10))
	for _, part := range [][]ingest.Entry{in[:20], in[20:40], in[40:]} {
		if err := q.Publish(t.Context(), part); err != nil {
			t.Fatal(err)
		}
	}
	sameRecords(t, readN(t, q, len(in), nil), in)
	expectEmpty(t, q)
}

func testBatchContents(t *testing.T, open Opener) {
	q := openDefault(t, open).Queue
	var in []ingest.Entry
	for i, cluster := range []string{"", "prod", "prod", "", "staging", "prod"} {
		in = append(in, entries(cluster, 10*i, 10)...)
	}
	if err := q.Publish(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	got := readN(t, q, len(in), nil)
	sameRecords(t, got, in)
	// A queue with positions names them; one without passes the
	// publisher's on.
	for _, r := range got {
		if r.Origin == "" {
			t.Fatalf("record %.40s has no origin", r.Data)
		}
	}
}

func testRedeliverAfterFailedAck(t *testing.T, open Opener) {
	q := openDefault(t, open).Queue
	in := entries("", 0, 30)
	if err := q.Publish(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	// The records of the failed batch come again; all come once acknowledged.
	ctx, cancel := context.WithTimeout(t.Context(), readTimeout)
	defer cancel()
	b, err := q.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Ack(ctx, errors.New("detection failed")); err != nil {
		t.Fatal(err)
	}
	sameRecords(t, readN(t, q, len(in), nil), in)
	expectEmpty(t, q)
}

func testRedeliverAfterReopen(t *testing.T, open Opener) {
	h := open(t, Limits{})
	if h.Reopen == nil {
		h.Queue.Close(context.Background())
		t.Skip("the queue keeps nothing past Close")
	}
	in := entries("", 0, 30)
	if err := h.Queue.Publish(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), readTimeout)
	defer cancel()
	if b, err := h.Queue.Read(ctx); err != nil || len(b.Records) == 0 {
		t.Fatalf("read %d records, %v", len(b.Records), err)
	}
	if err := h.Queue.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	q := h.Reopen(t)
	defer q.Close(context.Background())
	sameRecords(t, readN(t, q, len(in), nil), in)
	expectEmpty(t, q)
}

func testDuplicates(t *testing.T, open Opener) {
	q := openDefault(t, open).Queue
	first := entries("", 0, 30)
	unkeyed := entries("", 100, 1)[0]
	unkeyed.Key = ""
	// The apiserver sends a batch again after a slow answer, and a batch
	// may repeat an event; entries without a key are never duplicates.
	for _, batch := range [][]ingest.Entry{
		first,
		first,
		slices.Concat(entries("", 30, 10), first[:5], entries("", 30, 2)),
		{unkeyed, unkeyed},
	} {
		if err := q.Publish(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
	want := slices.Concat(first, entries("", 30, 10), []ingest.Entry{unkeyed, unkeyed})
	sameRecords(t, readN(t, q, len(want), nil), want)
	expectEmpty(t, q)
}

func testOrder(t *testing.T, open Opener) {
	h := openDefault(t, open)
	switch {
	case h.Ordered:
		var in []ingest.Entry
		for i := range 10 {
			batch := slices.Concat(entries("a", 30*i, 10), entries("b", 30*i+10, 10), entries("a", 30*i+20, 10))
			if err := h.Queue.Publish(t.Context(), batch); err != nil {
				t.Fatal(err)
			}
			in = append(in, batch...)
		}
		got := readN(t, h.Queue, len(in), nil)
		for i, r := range got {
			if string(r.Data) != string(in[i].Data) {
				t.Fatalf("record %d is %.40s, want %.40s", i, r.Data, in[i].Data)
			}
		}
	case h.OrderedByKey:
		users := []string{"alice", "bob", "system:serviceaccount:kube-system:job-controller", ""}
		var in []ingest.Entry
		want := map[string][]string{}
		for i := range 10 {
			var batch []ingest.Entry
			for u, user := range users {
				part := userEntries(string(rune('a'+u%2)), user, 100*i+10*u, 10)
				for _, e := range part {
					want[user] = append(want[user], string(e.Data))
				}
				batch = append(batch, part...)
			}
			if err := h.Queue.Publish(t.Context(), batch); err != nil {
				t.Fatal(err)
			}
			in = append(in, batch...)
		}
		got := map[string][]string{}
		for _, r := range readN(t, h.Queue, len(in), nil) {
			user := ""
			for _, u := range users[:len(users)-1] {
				if strings.Contains(string(r.Data), `"username":"`+u+`"`) {
					user = u
				}
			}
			got[user] = append(got[user], string(r.Data))
		}
		for _, user := range users {
			if !slices.Equal(got[user], want[user]) {
				t.Fatalf("user %q: %d records in another order than the %d published", user, len(got[user]), len(want[user]))
			}
		}
	default:
		t.Skip("the queue does not promise order")
	}
}

// testCloseWhilePublishing closes the queue while publishers publish without
// pause and a consumer reads: Close waits for the calls in progress, every
// Publish succeeds or fails with ErrClosed, Read returns ErrClosed, and no
// goroutine is left behind. With one or two publishers a call often starts
// while none is in progress, which is the moment Close must not miss; with
// eight, many calls are in progress at once.
func testCloseWhilePublishing(t *testing.T, open Opener) {
	for _, publishers := range []int{1, 2, 8} {
		t.Run(fmt.Sprint("publishers=", publishers), func(t *testing.T) {
			closeWhilePublishing(t, open, publishers)
		})
	}
}

func closeWhilePublishing(t *testing.T, open Opener, publishers int) {
	before := runtime.NumGoroutine()
	q := open(t, Limits{}).Queue
	var wg sync.WaitGroup
	errs := make(chan error, publishers+1)
	for p := range publishers {
		wg.Go(func() {
			for i := 0; ; i += 10 {
				err := q.Publish(context.Background(), entries("", p<<20|i, 10))
				if errors.Is(err, ingest.ErrFull) {
					time.Sleep(time.Millisecond) // the reader catches up
					continue
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for {
			b, err := q.Read(context.Background())
			if err != nil {
				errs <- err
				return
			}
			b.Ack(context.Background(), nil) // fails once the queue closed
		}
	})
	time.Sleep(20 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- q.Close(context.Background()) }()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("publishers or the reader still blocked 30s after Close")
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, ingest.ErrClosed) {
			t.Errorf("during Close: %v, want an error wrapping ErrClosed", err)
		}
	}
	if err := q.Publish(t.Context(), entries("", 0, 1)); !errors.Is(err, ingest.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	// Goroutines of the queue may take a moment to see they are done.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before Open, %d after Close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func testFull(t *testing.T, open Opener) {
	const limit = 20
	h := open(t, Limits{MaxPending: limit})
	q := h.Queue
	defer q.Close(context.Background())
	var accepted []ingest.Entry
	for i := 0; ; i += 5 {
		batch := entries("", i, 5)
		err := q.Publish(t.Context(), batch)
		if errors.Is(err, ingest.ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted = append(accepted, batch...)
		if len(accepted) > 10*limit {
			t.Fatalf("%d entries accepted with a limit of about %d, and no ErrFull", len(accepted), limit)
		}
	}
	if len(accepted) == 0 {
		t.Fatal("the first publish was refused as full")
	}
	// A refused Publish may have stored some of its entries: read what
	// was accepted, and whatever else comes with it.
	got := append(readN(t, q, len(accepted), nil), readRest(t, q)...)
	if !containsAll(got, accepted) {
		t.Fatalf("read %d records that lack some of the %d accepted", len(got), len(accepted))
	}
	if err := q.Publish(t.Context(), entries("", 1<<20, 5)); err != nil {
		t.Fatalf("publish once all was acknowledged: %v", err)
	}
}

func testAckTwice(t *testing.T, open Opener) {
	q := openDefault(t, open).Queue
	in := entries("", 0, 3)
	if err := q.Publish(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	for _, first := range []error{errors.New("detection failed"), nil} {
		ctx, cancel := context.WithTimeout(t.Context(), readTimeout)
		b, err := q.Read(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Ack(t.Context(), first); err != nil {
			t.Fatal(err)
		}
		if err := b.Ack(t.Context(), nil); err == nil {
			t.Errorf("a second Ack after Ack(%v) succeeded", first)
		}
	}
	expectEmpty(t, q)
}

func testReadHonoursContext(t *testing.T, open Opener) {
	q := openDefault(t, open).Queue
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := q.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Read with a done context: %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if _, err := q.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Read cancelled while waiting: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Read returned %v after its context was cancelled", d)
	}
}
