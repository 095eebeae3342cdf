package slack_test

import (
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/sinks/sinktest"
	"github.com/vigil-k8s/vigil/sinks/slack"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestSink_Send(t *testing.T) {
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/services/T000/B000/XXXXSECRET" {
			t.Errorf("got %s %s", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		body, _ = io.ReadAll(r.Body)
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	s, err := slack.New(slack.Config{Name: "team-a", URL: srv.URL + "/services/T000/B000/XXXXSECRET", Channel: "#sec"})
	if err != nil {
		t.Fatal(err)
	}
	if retry, err := s.Send(t.Context(), sinktest.Alerts()...); err != nil {
		t.Fatalf("Send: retry=%v err=%v", retry, err)
	}
	sinktest.Golden(t, "testdata/message.golden.json", body, *update)
	var m slack.Message
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	// The message must say who, what, where, when, the command, the secret
	// names and the audit IDs.
	text := m.Blocks[0].Text.Text + m.Blocks[2].Text.Text
	for _, want := range []string{"*Who:* kubernetes-admin from 127.0.0.1", "*What:* get pods/exec web → 101",
		"*Where:* cluster lab, namespace team-a", "*When:* 2026-11-22T06:27:38Z",
		"*Command:* `cat /var/run/secrets/kubernetes.io/serviceaccount/token`",
		"*Secrets:* prod/db-credentials, prod/api-key", "*Audit IDs:* 4a6fbd43-4c4c-4f7b-a1a7-0d53b1a1c2e1",
		"(+1 more)", "6 events"} {
		if !strings.Contains(text, want) {
			t.Errorf("message lacks %q:\n%s", want, text)
		}
	}
}

func TestSink_Send_rejected(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "no_service")
	}))
	defer srv.Close()
	s, err := slack.New(slack.Config{Name: "x", URL: srv.URL + "/services/T000/B000/XXXXSECRET"})
	if err != nil {
		t.Fatal(err)
	}
	retry, err := s.Send(t.Context(), sinktest.Alerts()[0])
	if err == nil || retry || !strings.Contains(err.Error(), "no_service") {
		t.Fatalf("retry=%v err=%v, want a permanent no_service error", retry, err)
	}
	if strings.Contains(err.Error(), "XXXXSECRET") || strings.Contains(s.String(), "XXXXSECRET") {
		t.Errorf("webhook URL leaked: %v / %s", err, s)
	}
}

func TestConfig_Validate_hidesURL(t *testing.T) {
	err := slack.Config{URL: "hooks.slack.com/services/T0/B0/SECRETPART"}.Validate()
	if err == nil || strings.Contains(err.Error(), "SECRETPART") {
		t.Errorf("Validate = %v, want an error that does not echo the URL", err)
	}
}
