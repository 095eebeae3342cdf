package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
	"github.com/vigil-k8s/vigil/sinks/sinktest"
	"github.com/vigil-k8s/vigil/sinks/webhook"
)

var update = flag.Bool("update", false, "rewrite golden files")

type request struct {
	header http.Header
	body   []byte
}

// recorder is an httptest server that keeps every request it receives.
func recorder(t *testing.T, status int) (*httptest.Server, func() []request) {
	var mu sync.Mutex
	var got []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/intake" {
			t.Errorf("got %s %s, want POST /intake", r.Method, r.URL.Path)
		}
		mu.Lock()
		got = append(got, request{r.Header.Clone(), b})
		mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []request { mu.Lock(); defer mu.Unlock(); return append([]request(nil), got...) }
}

func TestSink_Send(t *testing.T) {
	for _, tc := range []struct {
		name     string
		batch    bool
		requests int
	}{{"single", false, 3}, {"batch", true, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			srv, got := recorder(t, http.StatusAccepted)
			s, err := webhook.New(webhook.Config{Name: "siem", URL: srv.URL + "/intake", Batch: tc.batch,
				Headers: map[string]string{"X-Tenant": "blue"}, HMACSecret: "hook-signing-key"})
			if err != nil {
				t.Fatal(err)
			}
			if retry, err := s.Send(t.Context(), sinktest.Alerts()...); err != nil {
				t.Fatalf("Send: retry=%v err=%v", retry, err)
			}
			reqs := got()
			if len(reqs) != tc.requests {
				t.Fatalf("got %d requests, want %d", len(reqs), tc.requests)
			}
			var all bytes.Buffer
			for _, r := range reqs {
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
				if v := r.header.Get("X-Tenant"); v != "blue" {
					t.Errorf("X-Tenant = %q, want blue", v)
				}
				sig := r.header.Get(webhook.DefaultSignatureHeader)
				if want := webhook.Sign([]byte("hook-signing-key"), r.body); sig != want || !strings.HasPrefix(sig, "sha256=") {
					t.Errorf("signature %q, want %q", sig, want)
				}
				all.Write(r.body)
				all.WriteByte('\n')
			}
			sinktest.Golden(t, "testdata/"+tc.name+".golden", all.Bytes(), *update)
		})
	}
}

func TestSink_Send_status(t *testing.T) {
	for _, tc := range []struct {
		code  int
		retry bool
	}{{400, false}, {401, false}, {404, false}, {408, true}, {413, false}, {429, true}, {500, true}, {503, true}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(tc.code)
		}))
		s, err := webhook.New(webhook.Config{Name: "x", URL: srv.URL + "/token-abc123/intake"})
		if err != nil {
			t.Fatal(err)
		}
		retry, err := s.Send(t.Context(), sinktest.Alerts()[0])
		srv.Close()
		if err == nil || retry != tc.retry {
			t.Errorf("status %d: retry=%v err=%v, want retry=%v and an error", tc.code, retry, err, tc.retry)
			continue
		}
		var se *sinkutil.StatusError
		if !errors.As(err, &se) || se.Code != tc.code || se.RetryAfter() != 7*time.Second {
			t.Errorf("status %d: error %v does not carry the status and Retry-After", tc.code, err)
		}
	}
}

func TestSink_Send_errorHidesURL(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL + "/hooks/T0/B0/very-secret-path"
	srv.Close() // connection refused from now on
	s, err := webhook.New(webhook.Config{Name: "x", URL: u})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	retry, err := s.Send(ctx, sinktest.Alerts()[0])
	if err == nil || !retry {
		t.Fatalf("retry=%v err=%v, want a retryable error", retry, err)
	}
	if strings.Contains(err.Error(), "very-secret-path") {
		t.Errorf("error leaks the URL: %v", err)
	}
}

func TestConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		cfg  webhook.Config
		want string
	}{
		{webhook.Config{}, "url: required"},
		{webhook.Config{URL: "ftp://x"}, "url: scheme must be http or https"},
		{webhook.Config{URL: "http://x", SignatureHeader: "X-Sig"}, "signature_header: set without hmac_secret"},
		{webhook.Config{URL: "http://x", TLS: sinkutil.TLS{CertFile: "c.pem"}}, "tls.cert_file: cert_file and key_file must be set together"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
