package respond

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

// hook is an httptest receiver of webhook actions that answers with the
// next status of its script (200 when the script is done).
type hook struct {
	mu     sync.Mutex
	script []int
	got    []WebhookPayload
	srv    *httptest.Server
}

func newHook(t *testing.T, statuses ...int) *hook {
	h := &hook{script: statuses}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m := hmac.New(sha256.New, []byte("s3cret"))
		m.Write(body)
		if r.Header.Get("X-Vigil-Signature") != "sha256="+hex.EncodeToString(m.Sum(nil)) || r.Header.Get("X-Team") != "sec" {
			http.Error(w, "bad signature or headers", http.StatusUnauthorized)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		code := http.StatusOK
		if len(h.script) > 0 {
			code, h.script = h.script[0], h.script[1:]
		}
		if code == http.StatusOK {
			var p WebhookPayload
			if err := json.Unmarshal(body, &p); err != nil {
				t.Errorf("payload %s: %v", body, err)
			}
			h.got = append(h.got, p)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) payloads() []WebhookPayload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]WebhookPayload(nil), h.got...)
}

func webhookResponder(t *testing.T, url string, enforce bool) (*Responder, *Journal) {
	t.Helper()
	j, err := OpenJournal(filepath.Join(t.TempDir(), "j.jsonl"), JournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustDecode(t, fmt.Sprintf(`
rules:
  - name: soar
    match: {min_severity: high}
    actions: [{type: webhook, enforce: %t, url: %q, hmac_secret: s3cret, headers: {X-Team: sec}, timeout: 2s, rate_limit: {max: 1}}]`, enforce, url))
	r, err := New(cfg, Options{Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	r.Start(nil)
	t.Cleanup(func() { r.Close() })
	return r, j
}

var webAlert = alertOn("pod-privileged", detect.SeverityHigh, "admin", podRef, t0)

func TestWebhook_DryRunPostsNothing(t *testing.T) {
	h := newHook(t)
	r, _ := webhookResponder(t, h.srv.URL, false)
	rec := handleOne(t, r, webAlert)
	if rec.Mode != ModeDryRun || rec.Status != StatusPlanned || len(h.payloads()) != 0 {
		t.Errorf("record %+v, posts %d", rec, len(h.payloads()))
	}
}

func TestWebhook_EnforceAndUndo(t *testing.T) {
	h := newHook(t)
	r, j := webhookResponder(t, h.srv.URL, true)
	rec := handleOne(t, r, webAlert)
	if rec.Mode != ModeEnforce || rec.Status != StatusDone {
		t.Fatalf("record %+v", rec)
	}
	got := h.payloads()
	if len(got) != 1 || got[0].Record.ID != rec.ID || got[0].Record.Action != "webhook" || got[0].Alert == nil ||
		got[0].Alert.Fingerprint != webAlert.Fingerprint || got[0].Record.Target.Name != "node-shell" {
		t.Fatalf("posted %+v", got)
	}
	u, err := Undo(context.Background(), nil, j, r.cfg, rec.ID, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got = h.payloads()
	if len(got) != 2 || got[1].Record.Status != StatusUndone || got[1].Record.Undoes != rec.ID || got[1].Undoes == nil ||
		got[1].Undoes.ID != rec.ID || got[1].Alert != nil || u.ID != rec.ID+".undo" {
		t.Errorf("undo posted %+v, record %+v", got, u)
	}
}

func TestWebhook_RefusesProtectedTarget(t *testing.T) {
	h := newHook(t)
	r, _ := webhookResponder(t, h.srv.URL, true)
	al := alertOn("pod-privileged", detect.SeverityHigh, "admin", ingest.ObjectRef{Resource: "pods", Namespace: "kube-system", Name: "etcd"}, t0)
	rec := handleOne(t, r, al)
	if rec.Status != StatusRefused || rec.Detail != "namespace kube-system is protected" || len(h.payloads()) != 0 {
		t.Errorf("record %+v, posts %d", rec, len(h.payloads()))
	}
}

// TestWebhook_RetriesThenFails: an outage hands the alert back (nothing is
// recorded, and nothing counts against the rate limit of one, so the next
// delivery runs it); a 4xx is an answer, recorded as failed.
func TestWebhook_RetriesThenFails(t *testing.T) {
	h := newHook(t, http.StatusServiceUnavailable, http.StatusBadRequest)
	r, j := webhookResponder(t, h.srv.URL, true)
	ctx := context.Background()
	retry, err := r.Send(ctx, webAlert)
	if err == nil || !retry {
		t.Fatalf("503: retry %v, err %v", retry, err)
	}
	if _, seen := j.Lookup(actionID(webAlert.Fingerprint, "soar", 0)); seen {
		t.Fatal("a failure of the moment was recorded")
	}
	retry, err = r.Send(ctx, webAlert)
	if err != nil || retry {
		t.Fatalf("400: retry %v, err %v", retry, err)
	}
	rec, _ := j.Lookup(actionID(webAlert.Fingerprint, "soar", 0))
	if rec.Status != StatusFailed || rec.Detail == "" {
		t.Errorf("record %+v, want failed", rec)
	}
}
