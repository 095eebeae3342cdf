package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest/jetstream"
	"github.com/vigil-k8s/vigil/internal/auditgen"
	"github.com/vigil-k8s/vigil/policies"
	"github.com/vigil-k8s/vigil/sinks"
)

// timedAlerts is the real alert store (the sinks in durable mode on the
// queue's JetStream) that notes when each alert of a probe was stored.
type timedAlerts struct {
	*sinks.Dispatcher
	mu     sync.Mutex
	stored map[string]time.Time
}

func (a *timedAlerts) Dispatch(ctx context.Context, alerts ...detect.Alert) error {
	if err := a.Dispatcher.Dispatch(ctx, alerts...); err != nil {
		return err
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, al := range alerts {
		if al.Rule == "forbidden-burst-user" {
			a.stored[al.User.Username] = now
		}
	}
	return nil
}

func (a *timedAlerts) at(user string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.stored[user]
	return t, ok
}

// BenchmarkAlertLatency measures, on the live path with the embedded
// JetStream queue, the real webhook and the durable alert store, the time
// from the POST that completes a threshold (the 20th forbidden request of
// a user within a minute, forbidden-burst-user) to its alert being stored,
// while generated traffic arrives at 20,000 events/s:
//
//	go test ./ingest/pipeline -run '^$' -bench AlertLatency -benchtime 100x
//
// One op is one probe; it reports p50, p99 and the largest latency.
func BenchmarkAlertLatency(b *testing.B) {
	const rate = 20_000
	ctx := context.Background()
	dir := b.TempDir()
	q, err := jetstream.Open(ctx, jetstream.Options{Dir: filepath.Join(dir, "queue")})
	if err != nil {
		b.Fatal(err)
	}
	disp, err := sinks.Build(ctx, sinks.Config{Sinks: []sinks.SinkConfig{sinks.FileSink("out", filepath.Join(dir, "alerts.jsonl"))}},
		sinks.WithDurable(q.JetStream(), sinks.DurableOptions{}), sinks.WithNATS(q.Conn()))
	if err != nil {
		b.Fatal(err)
	}
	store := &timedAlerts{Dispatcher: disp, stored: map[string]time.Time{}}
	cat, err := policies.LoadBuiltin()
	if err != nil {
		b.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(ctx, Config{Rules: rs, Queue: q, Alerts: store, DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			b.Errorf("Run: %v", err)
		}
	}()
	url := "http://" + srv.WebhookAddr().String() + "/audit"
	client := &http.Client{Timeout: 10 * time.Second}
	post := func(body []byte) error {
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST: %s", resp.Status)
		}
		return nil
	}
	for !srv.recv.Ready() {
		time.Sleep(10 * time.Millisecond)
	}

	// Background: a second of generated traffic made up front, posted
	// again and again by four clients, each EventList of 400 every 80ms,
	// with fresh auditIDs so that the queue takes every event as new.
	const clients, perPost = 4, 400
	pool := auditgen.Events(auditgen.Options{Seed: 5, Start: time.Now(), Rate: rate}, rate)
	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	var posted, ids atomic.Int64
	loadStart := time.Now()
	for c := range clients {
		load.Go(func() {
			tick := time.NewTicker(time.Second * perPost * clients / rate)
			defer tick.Stop()
			var body []byte
			for i := c * perPost; ; i += clients * perPost {
				body = append(body[:0], `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[`...)
				for j := range perPost {
					if j > 0 {
						body = append(body, ',')
					}
					body = withAuditID(body, pool[(i+j)%len(pool)], ids.Add(1))
				}
				body = append(body, "]}"...)
				if err := post(body); err != nil && loadCtx.Err() == nil {
					b.Errorf("background: %v", err)
					return
				}
				posted.Add(perPost)
				select {
				case <-loadCtx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	defer func() { stopLoad(); load.Wait() }()
	time.Sleep(2 * time.Second)

	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		user := fmt.Sprintf("probe-%d", i)
		now := time.Now()
		var first []string
		for j := range 19 {
			first = append(first, event(fmt.Sprintf("%s-%d", user, j), user, "list", "secrets", 403, now.Add(time.Duration(j-20)*time.Millisecond)))
		}
		if err := post(eventList(first...)); err != nil {
			b.Fatal(err)
		}
		last := eventList(event(user+"-19", user, "list", "secrets", 403, time.Now()))
		sent := time.Now()
		if err := post(last); err != nil {
			b.Fatal(err)
		}
		for {
			if at, ok := store.at(user); ok {
				lat = append(lat, at.Sub(sent))
				break
			}
			if time.Since(sent) > 30*time.Second {
				b.Fatalf("no alert for %s after 30s", user)
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopLoad()
	load.Wait()
	b.ReportMetric(float64(posted.Load())/time.Since(loadStart).Seconds(), "background-events/s")
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(float64(pct(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// withAuditID appends ev to dst with its auditID replaced by one made of n.
func withAuditID(dst, ev []byte, n int64) []byte {
	const key = `"auditID":"`
	i := bytes.Index(ev, []byte(key))
	if i < 0 {
		return append(dst, ev...)
	}
	i += len(key)
	dst = append(dst, ev[:i]...)
	dst = fmt.Appendf(dst, "%08x-0000-4000-8000-%012x", uint32(n>>32), uint64(n)&(1<<48-1))
	return append(dst, ev[i+36:]...)
}
