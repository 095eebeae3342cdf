package sinks_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/sinks"
	"github.com/vigil-k8s/vigil/sinks/alertmanager"
	"github.com/vigil-k8s/vigil/sinks/file"
	"github.com/vigil-k8s/vigil/sinks/kafka"
	natssink "github.com/vigil-k8s/vigil/sinks/nats"
	"github.com/vigil-k8s/vigil/sinks/sinktest"
	"github.com/vigil-k8s/vigil/sinks/slack"
	"github.com/vigil-k8s/vigil/sinks/webhook"
)

// secretValues reads the fixture's secret values and checks each really
// is in the fixture events (raw or URL-encoded), so the list cannot drift.
func secretValues(t *testing.T) []string {
	t.Helper()
	events, err := os.ReadFile("testdata/redaction/events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/redaction/secrets.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if !bytes.Contains(events, []byte(s)) && !bytes.Contains(events, []byte(strings.ReplaceAll(s, "=", "%3D"))) {
			// Decoded values of base64 secret data are listed too.
			found := false
			for _, line := range bytes.Split(events, []byte("\n")) {
				if bytes.Contains(line, []byte(b64(s))) {
					found = true
				}
			}
			if !found {
				t.Fatalf("secret %q is not in the fixture events", s)
			}
		}
		out = append(out, s)
	}
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// fixtureAlerts builds, for every fixture event, the alert a careless rule
// would raise: its output template prints the request and response
// objects (as text/template prints maps), and every free-text field
// carries what the event does.
func fixtureAlerts(t *testing.T) []detect.Alert {
	t.Helper()
	f, err := os.Open("testdata/redaction/events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []detect.Alert
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev ingest.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		msg := fmt.Sprintf("%s %s %s/%s request=%v response=%v", ev.User.Username, ev.Verb,
			ev.ObjectRef.Resource, ev.ObjectRef.Name, ev.RequestObject, ev.ResponseObject)
		ref := ev.ObjectRef
		a := detect.Alert{
			Rule: "sensitive-" + ev.ObjectRef.Resource, Title: "Sensitive " + ev.ObjectRef.Resource + " request",
			Severity: detect.SeverityHigh, Tags: []string{"T1552"}, Message: msg, Description: msg,
			Time: ev.RequestReceivedTimestamp, Cluster: "lab", User: ev.User, SourceIPs: ev.SourceIPs,
			UserAgent: ev.UserAgent, Verb: ev.Verb, ObjectRef: &ref, RequestURI: ev.RequestURI,
			ResponseCode: ev.ResponseStatus.Code, ExecCommand: detect.ExecCommand(ev.RequestURI),
			AuditIDs: []string{ev.AuditID}, GroupKey: ev.AuditID, Count: 1,
			Distinct:  []string{fmt.Sprint(ev.RequestObject)},
			FirstTime: ev.RequestReceivedTimestamp, LastTime: ev.RequestReceivedTimestamp,
		}
		a.Fingerprint = detect.Fingerprint(a.Rule, a.GroupKey, a.FirstTime)
		out = append(out, a)
	}
	return out
}

// capture is an HTTP endpoint that keeps every body; it fails the first
// request with 503 so that the retry path (and its logging) runs too.
type capture struct {
	mu     sync.Mutex
	bodies bytes.Buffer
	n      int
}

func (c *capture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	c.bodies.Write(b)
	if c.n == 1 {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (c *capture) String() string { c.mu.Lock(); defer c.mu.Unlock(); return c.bodies.String() }

// TestRedaction_allSinks sends alerts full of the fixtures' secret values
// through every sink type and fails if any value reaches any output, the
// log or an error.
func TestRedaction_allSinks(t *testing.T) {
	secrets := secretValues(t)
	alerts := fixtureAlerts(t)
	raw, _ := json.Marshal(alerts)
	for _, s := range secrets {
		if !bytes.Contains(raw, []byte(s)) && !bytes.Contains(raw, []byte(b64(s))) &&
			!bytes.Contains(raw, []byte(strings.ReplaceAll(s, "=", "%3D"))) {
			t.Fatalf("test alerts do not carry %q: the test would prove nothing", s)
		}
	}

	hook, am, sl := &capture{}, &capture{}, &capture{}
	hookSrv, amSrv, slSrv := httptest.NewServer(hook), httptest.NewServer(am), httptest.NewServer(sl)
	defer hookSrv.Close()
	defer amSrv.Close()
	defer slSrv.Close()

	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	defer ns.Shutdown()
	nc, err := natsgo.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("vigil.out")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()

	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "alerts"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()

	dir := t.TempDir()
	var stdout, logs bytes.Buffer
	var logMu sync.Mutex
	retry := sinks.RetryConfig{Initial: detect.Duration(time.Millisecond), Max: detect.Duration(5 * time.Millisecond)}
	slackSecret := "/services/T0/B0/SLACKURLSECRET"
	cfg := sinks.Config{Sinks: []sinks.SinkConfig{
		{Name: "out", Type: "stdout"},
		{Name: "file", Type: "file", Settings: &file.Config{Path: filepath.Join(dir, "alerts.jsonl")}},
		{Name: "hook", Type: "webhook", Delivery: sinks.Delivery{Retry: retry},
			Settings: &webhook.Config{URL: hookSrv.URL, Batch: true, HMACSecret: "hmac-key"}},
		{Name: "am", Type: "alertmanager", Delivery: sinks.Delivery{Retry: retry}, Settings: &alertmanager.Config{URL: amSrv.URL}},
		{Name: "slack", Type: "slack", Delivery: sinks.Delivery{Retry: retry}, Settings: &slack.Config{URL: slSrv.URL + slackSecret}},
		{Name: "bus", Type: "nats", Settings: &natssink.Config{URL: ns.ClientURL(), Subject: "vigil.out"}},
		{Name: "kafka", Type: "kafka", Settings: &kafka.Config{Brokers: kc.ListenAddrs(), Topic: "alerts"}},
	}}
	d, err := sinks.Build(t.Context(), cfg, sinks.WithStdout(&stdout),
		sinks.WithLogger(slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Dispatch(t.Context(), alerts...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}

	outputs := map[string]string{"stdout": stdout.String(), "webhook": hook.String(),
		"alertmanager": am.String(), "slack": sl.String()}
	b, err := os.ReadFile(filepath.Join(dir, "alerts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	outputs["file"] = string(b)
	var natsOut strings.Builder
	for range alerts {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("nats: %v", err)
		}
		natsOut.Write(m.Data)
	}
	outputs["nats"] = natsOut.String()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.ConsumeTopics("alerts"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var kafkaOut strings.Builder
	for n := 0; n < len(alerts); {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("kafka: got %d of %d records", n, len(alerts))
		}
		fs.EachRecord(func(r *kgo.Record) { kafkaOut.Write(r.Value); n++ })
	}
	outputs["kafka"] = kafkaOut.String()
	logMu.Lock()
	outputs["log"] = logs.String()
	logMu.Unlock()

	for name, out := range outputs {
		if name != "log" && len(out) < 100 {
			t.Errorf("%s: output too short to prove anything: %q", name, out)
		}
		for _, s := range secrets {
			for _, form := range []string{s, strings.ReplaceAll(s, "=", "%3D"), jsonEscaped(s)} {
				if strings.Contains(out, form) {
					t.Errorf("%s output carries secret %q", name, s)
				}
			}
		}
	}
	if strings.Contains(outputs["log"], "SLACKURLSECRET") {
		t.Errorf("the log carries the Slack webhook URL")
	}
	if !strings.Contains(outputs["log"], "retrying") {
		t.Errorf("the 503s were not logged; the test did not exercise the error path:\n%s", outputs["log"])
	}
	// Redaction keeps what an analyst needs.
	for _, want := range []string{"db-credentials", "MYSQL_PWD", "grafana:3000", "kubernetes-admin"} {
		if !strings.Contains(outputs["stdout"], want) {
			t.Errorf("stdout lost %q", want)
		}
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func jsonEscaped(s string) string {
	b, _ := json.Marshal(s)
	return strings.Trim(string(b), `"`)
}

func TestRedactText(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := sinks.RedactText(in); got != want {
			t.Errorf("RedactText(%q)\ngot  %q\nwant %q", in, got, want)
		}
	}
	f("read secrets: db-credentials, api-key", "read secrets: db-credentials, api-key")
	f("system:serviceaccount:ci:secret-reader listed secrets", "system:serviceaccount:ci:secret-reader listed secrets")
	f("map[data:map[password:aHVudGVy] kind:Secret]", "map[data:[REDACTED] kind:Secret]")
	f(`{"stringData":{"a":"b"}}`, `{"stringData":[REDACTED]}`)
	f("env MYSQL_PWD=hunter2 mysql", "env MYSQL_PWD=[REDACTED] mysql")
	f("Authorization: Bearer abcdef123456", "Authorization: Bearer [REDACTED]")
	f("postgres://app:pw@db/x", "postgres://app:[REDACTED]@db/x")
	f("key AKIAABCDEFGHIJKLMNOP", "key [REDACTED]")
	f("join 07401b.f395accd246ae52d", "join [REDACTED]")
	f("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "[REDACTED PRIVATE KEY]")
	f("fingerprint 4be22658fcbd96e6915cc15765be8ba8", "fingerprint 4be22658fcbd96e6915cc15765be8ba8")
}

func TestRedactURI(t *testing.T) {
	got := sinks.RedactURI("/api/v1/namespaces/a/pods/p/exec?command=cat&command=%2Fetc%2Fpasswd&container=c&token=abc")
	if strings.Contains(got, "abc") || !strings.Contains(got, "command=cat") || !strings.Contains(got, "%2Fetc%2Fpasswd") {
		t.Errorf("RedactURI = %q", got)
	}
}

func BenchmarkRedact(b *testing.B) {
	alerts := sinktest.Alerts()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = sinks.Redact(alerts[i%len(alerts)])
	}
}
