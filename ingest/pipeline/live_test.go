package pipeline

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
)

// TestLive_OutOfOrderMatchesReplay posts events through the webhook in an
// order a live stream may have (each late by up to 30s of event time,
// within the lateness) and checks that the live pipeline raises the
// alerts a replay of the same events in time order raises: the same rules
// and keys.
func TestLive_OutOfOrderMatchesReplay(t *testing.T) {
	h := start(t, false)
	stop := h.run(t)
	defer stop()

	rng := rand.New(rand.NewPCG(3, 3))
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	type timed struct {
		body    string
		at, arr time.Time
	}
	var evs []timed
	for burst := range 4 {
		user := fmt.Sprintf("user%d", burst%2)
		for i := range 5 {
			at := base.Add(time.Duration(burst)*20*time.Minute + time.Duration(i)*5*time.Second)
			evs = append(evs, timed{event(fmt.Sprintf("f%d-%d", burst, i), user, "list", "pods", 403, at), at,
				at.Add(time.Duration(rng.IntN(30)) * time.Second)})
		}
		at := base.Add(time.Duration(burst)*20*time.Minute + time.Minute)
		evs = append(evs, timed{event(fmt.Sprintf("r%d", burst), "reader", "get", "secrets", 200, at), at, at})
	}
	byTime := slices.Clone(evs)
	slices.SortStableFunc(byTime, func(a, b timed) int { return a.at.Compare(b.at) })
	var sorted [][]byte
	for _, e := range byTime {
		sorted = append(sorted, []byte(e.body))
	}
	replay, err := detect.Evaluate(compileRules(t), sorted)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortStableFunc(evs, func(a, b timed) int { return a.arr.Compare(b.arr) })
	for lo := 0; lo < len(evs); lo += 3 {
		var batch []string
		for _, e := range evs[lo:min(lo+3, len(evs))] {
			batch = append(batch, e.body)
		}
		h.post(t, eventList(batch...))
	}
	keys := func(as []string) []string { slices.Sort(as); return as }
	var want []string
	for _, a := range replay {
		want = append(want, a.Rule+" "+a.User.Username)
	}
	want = keys(want)
	if len(want) < 6 {
		t.Fatalf("replay raised %v: the input must fire both rules", want)
	}
	waitFor(t, "the live alerts", func() bool { return len(h.rec.rules()) >= len(want) })
	time.Sleep(100 * time.Millisecond)
	if got := keys(h.rec.rules()); !slices.Equal(got, want) {
		t.Errorf("live alerts\n  %s\nreplay\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestMemoryLimit_Sheds runs the pipeline with a memory limit just above
// the heap in use, then holds a large allocation: the webhook answers 429,
// the refusals are counted, and once the heap shrinks events are accepted
// again.
func TestMemoryLimit_Sheds(t *testing.T) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	limit := int64(ms.HeapAlloc) + 256<<20
	h := startWith(t, false, func(c *Config) { c.MemoryLimit = limit })
	stop := h.run(t)
	defer stop()

	ev := eventList(event("x1", "bob", "get", "pods", 200, time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)))
	if code := h.postCode(t, ev); code != http.StatusOK {
		t.Fatalf("POST under the limit: %d", code)
	}
	ballast := make([]byte, limit)
	for i := 0; i < len(ballast); i += 4096 {
		ballast[i] = 1
	}
	waitFor(t, "a refusal", func() bool { return h.postCode(t, ev) == http.StatusTooManyRequests })
	if n := h.metric(t, "vigil_serve_memory_shed_total"); n < 1 {
		t.Errorf("vigil_serve_memory_shed_total = %v", n)
	}
	runtime.KeepAlive(ballast)
	ballast = nil
	waitFor(t, "events accepted again", func() bool {
		runtime.GC()
		return h.postCode(t, ev) == http.StatusOK
	})
}

func (h *harness) postCode(t *testing.T, body []byte) int {
	t.Helper()
	resp, err := http.Post("http://"+h.srv.WebhookAddr().String()+"/audit", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// metric reads one metric from /metrics.
func (h *harness) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + h.srv.OpsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}
