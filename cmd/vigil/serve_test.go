package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/plugin/pkg/audit/buffered"
	auditwebhook "k8s.io/apiserver/plugin/pkg/audit/webhook"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/detect/incident"
)

// freePort returns a loopback address nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// realEvents reads the captured audit log of a real apiserver as raw lines.
func realEvents(t *testing.T, run string) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "testdata", "real-apiserver", run, "audit.log.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			out = append(out, append([]byte(nil), sc.Bytes()...))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// toInternal converts logged events to what the apiserver's audit
// backends take.
func toInternal(t *testing.T, lines [][]byte) []*auditinternal.Event {
	t.Helper()
	out := make([]*auditinternal.Event, 0, len(lines))
	for i, l := range lines {
		var v1 auditv1.Event
		if err := json.Unmarshal(l, &v1); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		var ev auditinternal.Event
		if err := audit.Scheme.Convert(&v1, &ev, nil); err != nil {
			t.Fatalf("line %d: convert: %v", i+1, err)
		}
		out = append(out, &ev)
	}
	return out
}

// syncBuffer is a goroutine-safe buffer for a command's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// servedVigil is vigil serve running in this process.
type servedVigil struct {
	webhook, ops string
	dataDir      string
	stdout       *syncBuffer
	stderr       *syncBuffer
	cancel       context.CancelFunc
	done         chan error
}

func startServe(t *testing.T, dataDir string, extra ...string) *servedVigil {
	t.Helper()
	s := &servedVigil{webhook: freePort(t), ops: freePort(t), dataDir: dataDir,
		stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	a := &app{stdin: strings.NewReader(""), stdout: s.stdout, stderr: s.stderr,
		logger: slog.New(slog.NewJSONHandler(s.stderr, nil))}
	c := a.serveCmd()
	c.SetArgs(append([]string{"--listen", s.webhook, "--ops-listen", s.ops, "--data-dir", dataDir,
		"--advertise-url", "https://" + s.webhook + "/audit"}, extra...))
	c.SilenceUsage, c.SilenceErrors = true, true
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- c.ExecuteContext(ctx) }()
	s.waitReady(t)
	return s
}

func (s *servedVigil) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			t.Fatalf("serve exited: %v\n%s", err, s.stderr.String())
		default:
		}
		resp, err := http.Get("http://" + s.ops + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("serve not ready after 30s:\n%s", s.stderr.String())
}

func (s *servedVigil) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("serve: %v\n%s", err, s.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not stop within 60s")
	}
}

// metric returns the sum of the series of a metric on /metrics.
func metric(t *testing.T, ops, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

func waitMetric(t *testing.T, ops, name string, want float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := metric(t, ops, name)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %s, want %v", name, got, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func parseAlerts(t *testing.T, s string) []detect.Alert {
	t.Helper()
	var out []detect.Alert
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var a detect.Alert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("alert line %q: %v", line, err)
		}
		if a.Rule != incident.Rule { // serve's own, replay writes incidents apart
			out = append(out, a)
		}
	}
	return out
}

// alertKeys lists alerts as sorted "rule fingerprint" lines.
func alertKeys(as []detect.Alert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Rule + " " + a.Fingerprint
	}
	sort.Strings(out)
	return out
}

// TestServe_RealApiserverClient sends the events captured from a real
// apiserver through the apiserver's own webhook and buffered backends, over
// TLS with the generated client certificate and kubeconfig, and checks
// that vigil raises exactly the alerts a replay of the same log raises,
// each once.
func TestServe_RealApiserverClient(t *testing.T) {
	lines := realEvents(t, "run2")
	replayOut := filepath.Join(t.TempDir(), "replay.jsonl")
	if code, _, stderr := vigil(t, "", "replay", filepath.Join("..", "..", "testdata", "real-apiserver", "run2", "audit.log.gz"), "-o", replayOut); code != 0 {
		t.Fatalf("replay exit %d: %s", code, stderr)
	}
	want := readAlerts(t, replayOut)
	if len(want) < 20 {
		t.Fatalf("replay raised %d alerts; the capture should raise many", len(want))
	}

	dir := t.TempDir()
	s := startServe(t, dir)
	kubeconfig := filepath.Join(dir, "webhook-kubeconfig.yaml")
	if !strings.Contains(s.stderr.String(), kubeconfig) {
		t.Errorf("serve did not print where the kubeconfig is:\n%s", s.stderr.String())
	}
	wh, err := auditwebhook.NewBackend(kubeconfig, auditv1.SchemeGroupVersion,
		wait.Backoff{Duration: 100 * time.Millisecond, Factor: 1.5, Steps: 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// kube-apiserver's defaults (batch of 400, parallel sends), with a short
	// wait so the test does not idle.
	backend := buffered.NewBackend(wh, buffered.BatchConfig{BufferSize: 10000, MaxBatchSize: 400,
		MaxBatchWait: 100 * time.Millisecond, ThrottleEnable: false, AsyncDelegate: true})
	stopCh := make(chan struct{})
	if err := backend.Run(stopCh); err != nil {
		t.Fatal(err)
	}
	events := toInternal(t, lines)
	for i := 0; i < len(events); i += 50 {
		backend.ProcessEvents(events[i:min(i+50, len(events))]...)
	}
	close(stopCh)
	backend.Shutdown() // waits for the batches in flight

	waitMetric(t, s.ops, "vigil_serve_processed_events_total", float64(len(lines)), 60*time.Second)
	if got := metric(t, s.ops, "vigil_webhook_received_events_total"); got != float64(len(lines)) {
		t.Errorf("received %v events, want %d", got, len(lines))
	}
	s.stop(t) // flushes the windows
	got := parseAlerts(t, s.stdout.String())
	g, w := alertKeys(got), alertKeys(want)
	t.Logf("%d events, %d alerts from serve, %d from replay", len(lines), len(g), len(w))
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Errorf("serve raised %d alerts, replay %d;\nserve:\n%s\nreplay:\n%s", len(g), len(w), strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
	seen := map[string]bool{}
	for _, k := range g {
		if seen[k] {
			t.Errorf("alert %s sent twice", k)
		}
		seen[k] = true
	}
	// Serve also groups the alerts into incidents as they come: the rogue
	// service account's opens one.
	opened := false
	for _, line := range strings.Split(s.stdout.String(), "\n") {
		var a detect.Alert
		if json.Unmarshal([]byte(line), &a) == nil && a.Rule == incident.Rule && strings.Contains(a.Message, "ci:deployer") {
			opened = true
		}
	}
	if !opened {
		t.Error("serve raised no incident alert for system:serviceaccount:ci:deployer")
	}

	// A restart on the same data dir restores the window state the stop
	// saved and sends none of those alerts again.
	s = startServe(t, dir)
	s.stop(t)
	if again := parseAlerts(t, s.stdout.String()); len(again) != 0 {
		t.Errorf("restart sent %d alerts again: %v", len(again), alertKeys(again))
	}
}

// TestServe_Overload stalls detection: the webhook answers 429 with
// Retry-After once the queue holds its limit of unprocessed data, the heap
// stays bounded however much more is offered, and after the stall every
// acknowledged event is processed and new batches are accepted again.
func TestServe_Overload(t *testing.T) {
	dir := t.TempDir()
	rules := writeFile(t, dir, "rules.yaml", []byte(crashRules))
	cfg := writeFile(t, dir, "config.yaml", []byte("queue:\n  max_pending_bytes: 4194304\nserve:\n  retry_after: 2s\n"))
	addr, ops := freePort(t), freePort(t)
	release := make(chan struct{})
	var stalled sync.Once
	stallSeen := make(chan struct{})
	f := serveFlags{ruleFlags: ruleFlags{config: cfg, rules: []string{rules}, noBuiltin: true},
		insecureListen: addr, opsListen: ops, dataDir: filepath.Join(dir, "data"),
		beforeBatch: func(ctx context.Context) {
			stalled.Do(func() { close(stallSeen) })
			select {
			case <-release:
			case <-ctx.Done():
			}
		}}
	stderr := &syncBuffer{}
	a := &app{stdin: strings.NewReader(""), stdout: &syncBuffer{}, stderr: stderr,
		logger: slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, f) }()
	s := &servedVigil{webhook: addr, ops: ops, stderr: stderr, stdout: &syncBuffer{}, cancel: cancel, done: done}
	s.waitReady(t)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
		s.stop(t)
	}()

	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const per = 400
	next := 0
	client := &http.Client{Timeout: 10 * time.Second}
	post := func() (int, string) {
		items := make([]string, per)
		for i := range items {
			items[i] = crashEvent(base, next+i)
		}
		body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(items, ",") + `]}`
		resp, err := client.Post("http://"+addr+"/audit", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			next += per
		}
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}

	// Fill the queue: 4 MiB is some 25 batches of these events.
	accepted, refused := 0, 0
	for refused == 0 {
		code, retry := post()
		switch code {
		case http.StatusOK:
			accepted += per
			if accepted > 200*per {
				t.Fatalf("still accepting after %d events with detection stalled", accepted)
			}
		case http.StatusTooManyRequests:
			refused++
			if retry != "2" {
				t.Errorf("429 with Retry-After %q, want 2", retry)
			}
		default:
			t.Fatalf("answer %d while filling the queue", code)
		}
	}
	<-stallSeen
	before := heap()
	// Offer ten times the limit more: every request is refused and the
	// heap does not grow with what was offered.
	for range 250 {
		code, _ := post()
		if code != http.StatusTooManyRequests {
			t.Fatalf("answer %d with the queue full, want 429", code)
		}
		refused++
	}
	after := heap()
	t.Logf("accepted %d events, refused %d requests; heap %d MiB full, %d MiB after %d MiB more offered",
		accepted, refused, before>>20, after>>20, 250*per*len(crashEvent(base, 0))>>20)
	if after > before+16<<20 {
		t.Errorf("heap grew from %d to %d bytes while refusing", before, after)
	}
	if got := metric(t, ops, `vigil_webhook_rejected_requests_total{cluster="",reason="queue_full"}`); got != float64(refused) {
		t.Errorf("queue_full refusals counted %v, want %d", got, refused)
	}
	if got := metric(t, ops, "vigil_serve_processed_events_total"); got != 0 {
		t.Errorf("processed %v events while stalled", got)
	}

	// After the stall: everything acknowledged is processed, and the
	// webhook accepts again.
	close(release)
	waitMetric(t, ops, "vigil_serve_processed_events_total", float64(accepted), 30*time.Second)
	for {
		code, _ := post()
		if code == http.StatusOK {
			accepted += per
			break
		}
		if code != http.StatusTooManyRequests {
			t.Fatalf("answer %d after the stall", code)
		}
		time.Sleep(20 * time.Millisecond) // the pending figure drops as acks land
	}
	waitMetric(t, ops, "vigil_serve_processed_events_total", float64(accepted), 30*time.Second)
	if got := metric(t, ops, "vigil_serve_processed_events_total"); got != float64(accepted) {
		t.Errorf("processed %v events, acknowledged %d", got, accepted)
	}
}
