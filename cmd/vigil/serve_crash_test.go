package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/detect/incident"
	"github.com/vigil-k8s/vigil/ingest/jetstream"
	"github.com/vigil-k8s/vigil/sinks"
)

// crashRules are a stateless rule (one alert per delete, to prove each
// acknowledged event is processed) and a threshold window.
const crashRules = `rules:
- id: test-delete
  title: Delete seen
  severity: low
  audit: {level: Metadata, resources: [{group: "", resources: ["configmaps"]}]}
  match: verb == "delete"
  output: "{{ .user.username }} deleted {{ .objectRef.name }}"
- id: test-forbidden-burst
  title: Forbidden burst
  severity: high
  audit: {level: Metadata, resources: [{group: "", resources: ["configmaps"]}]}
  match: responseStatus.code == 403
  window: {kind: threshold, by: [user.username], within: 5s, count: 5, cooldown: 2s}
  output: "{{ .user.username }} got {{ .count }} forbidden answers"
`

const crashConfig = `detect:
  lateness: 2s
`

// crashEvent is event i of the stream: ten users, every other event
// forbidden, every fourth a delete; 10 ms of event time apart.
func crashEvent(base time.Time, i int) string {
	verb, code := "get", 200
	if i%2 == 1 {
		code = 403
	}
	if i%4 == 0 {
		verb = "delete"
	}
	ts := base.Add(time.Duration(i) * 10 * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000000Z")
	return fmt.Sprintf(`{"level":"Metadata","auditID":"crash-%06d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns/configmaps/cm-%d","verb":%q,"user":{"username":"user-%d"},"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"configmaps","namespace":"ns","name":"cm-%d","apiVersion":"v1"},"responseStatus":{"code":%d},"requestReceivedTimestamp":%q,"stageTimestamp":%q}`,
		i, i, verb, i%10, i, code, ts, ts)
}

// vigilBinary builds vigil (or takes VIGIL_BIN) and checks it has serve.
func vigilBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("VIGIL_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "vigil")
		out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	if out, err := exec.Command(bin, "serve", "--help").CombinedOutput(); err != nil {
		t.Fatalf("%s has no serve command (register a.serveCmd() in extraCommands): %v\n%s", bin, err, out)
	}
	return bin
}

// TestServe_CrashRestart kills a vigil receiving a steady stream with
// SIGKILL and restarts it on the same data dir: every event answered 200 is
// processed, windows still fire, and no alert is lost or sent twice
// (compared with a replay of the whole stream).
func TestServe_CrashRestart(t *testing.T) {
	bin := vigilBinary(t)
	dir := t.TempDir()
	rules := writeFile(t, dir, "rules.yaml", []byte(crashRules))
	cfg := writeFile(t, dir, "config.yaml", []byte(crashConfig))
	alertsFile := filepath.Join(dir, "alerts.jsonl")
	dataDir := filepath.Join(dir, "data")
	addr, ops := freePort(t), freePort(t)

	var logs []*syncBuffer
	dump := func() string {
		var sb strings.Builder
		for i, l := range logs {
			fmt.Fprintf(&sb, "--- run %d\n%s", i+1, l.String())
		}
		return sb.String()
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--insecure-listen", addr, "--ops-listen", ops, "--data-dir", dataDir,
			"--config", cfg, "--no-builtin", "--rules", rules, "-o", alertsFile)
		stderr := &syncBuffer{}
		cmd.Stderr = stderr
		logs = append(logs, stderr)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get("http://" + ops + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return cmd
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("vigil not ready:\n%s", stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	const batches, per = 150, 20
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var all []string
	for i := range batches * per {
		all = append(all, crashEvent(base, i))
	}
	client := &http.Client{Timeout: 5 * time.Second}
	post := func(b int) bool {
		body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(all[b*per:(b+1)*per], ",") + `]}`
		resp, err := client.Post("http://"+addr+"/audit", "application/json", strings.NewReader(body))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}

	cmd := start()
	killed := make(chan struct{})
	acked := 0
	for b := 0; b < batches; b++ {
		if b == 60 {
			// Kill while the next requests are in flight.
			go func() {
				time.Sleep(3 * time.Millisecond)
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				close(killed)
			}()
		}
		deadline := time.Now().Add(30 * time.Second)
		for !post(b) {
			if time.Now().After(deadline) {
				t.Fatalf("batch %d not accepted within 30s", b)
			}
			select {
			case <-killed:
				killed = nil
				cmd = start()
			default:
				time.Sleep(20 * time.Millisecond)
			}
		}
		acked++
	}
	if killed != nil {
		<-killed
		cmd = start()
		t.Log("the kill came after the last batch; restarted anyway")
	}
	// A graceful stop processes what the queue still holds and flushes the
	// windows.
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("vigil after SIGTERM: %v\n%s", err, dump())
	}

	events := writeFile(t, dir, "events.jsonl", []byte(strings.Join(all, "\n")+"\n"))
	wantFile := filepath.Join(dir, "want.jsonl")
	if code, _, stderr := vigil(t, "", "replay", events, "--config", cfg, "--no-builtin", "--rules", rules, "-o", wantFile); code != 0 {
		t.Fatalf("replay exit %d: %s", code, stderr)
	}
	want := readAlerts(t, wantFile)
	// VIGIL_ALERTS is where an alert is sent: each must be there once. The
	// file sink reads it at least once, so a crash between its write and
	// its ack may repeat a line; the fingerprint tells them apart.
	stored := storedAlerts(t, dataDir)
	fileLines := readAlerts(t, alertsFile)
	var got []detect.Alert
	inFile := map[string]bool{}
	for _, a := range fileLines {
		if !inFile[a.Fingerprint] {
			inFile[a.Fingerprint] = true
			got = append(got, a)
		}
	}
	g, w, st := alertKeys(got), alertKeys(want), alertKeys(stored)
	windowed := 0
	for _, a := range want {
		if a.Rule == "test-forbidden-burst" {
			windowed++
		}
	}
	t.Logf("%d batches acknowledged, %d alerts stored (%d windowed in the replay), replay %d, file %d lines (%d repeated by at-least-once delivery)",
		acked, len(st), windowed, len(w), len(fileLines), len(fileLines)-len(got))
	if windowed < 20 {
		t.Fatalf("replay raised %d windowed alerts; the stream should raise many", windowed)
	}
	gotFP := map[string]int{}
	for _, a := range stored {
		gotFP[a.Fingerprint]++
	}
	var missing []string
	for _, a := range want {
		if gotFP[a.Fingerprint] == 0 {
			missing = append(missing, a.Rule+":"+a.AuditIDs[len(a.AuditIDs)-1])
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d alerts missing, e.g. %v\n%s", len(missing), missing[:min(len(missing), 20)], dump())
	}
	if strings.Join(st, "\n") != strings.Join(w, "\n") {
		t.Errorf("after the crash vigil stored %d alerts, the replay raised %d\nstored:\n%s\nwant:\n%s", len(st), len(w), strings.Join(st, "\n"), strings.Join(w, "\n"))
	}
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Errorf("the file sink wrote %d distinct alerts, the replay raised %d\ngot:\n%s\nwant:\n%s", len(g), len(w), strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
}

// storedAlerts reads every alert of VIGIL_ALERTS in a stopped vigil's data
// dir.
func storedAlerts(t *testing.T, dataDir string) []detect.Alert {
	t.Helper()
	q, err := jetstream.Open(t.Context(), jetstream.Options{Dir: filepath.Join(dataDir, "queue")})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	st, err := q.JetStream().Stream(t.Context(), sinks.AlertStream)
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.OrderedConsumer(t.Context(), natsjs.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []detect.Alert
	for {
		batch, err := c.FetchNoWait(1000)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var a detect.Alert
			if err := json.Unmarshal(m.Data(), &a); err != nil {
				t.Fatalf("stored alert %q: %v", m.Data(), err)
			}
			if a.Rule != incident.Rule {
				out = append(out, a)
			}
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return out
		}
	}
}
