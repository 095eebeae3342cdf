package respond

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// Defaults of webhook.
const (
	DefaultWebhookTimeout  = 10 * time.Second
	DefaultSignatureHeader = "X-Vigil-Signature"
)

// WebhookParams are the keys of webhook: where to POST.
type WebhookParams struct {
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
	Timeout detect.Duration   `yaml:"timeout"`
	// HMACSecret signs the body: the signature header carries sha256= and
	// the hex HMAC-SHA256 of the exact body bytes.
	HMACSecret      string       `yaml:"hmac_secret"`
	SignatureHeader string       `yaml:"signature_header"`
	TLS             sinkutil.TLS `yaml:"tls"`

	once   sync.Once
	client *http.Client
	err    error
}

// Validate checks the URL and TLS files.
func (p *WebhookParams) Validate() error {
	return errors.Join(sinkutil.CheckURL("url", p.URL), sinkutil.Prefix("tls", p.TLS.Validate()))
}

// WebhookPayload is the body of a webhook action: the record and the
// alert behind it. An undo posts the undo record with the record it
// reverts (Alert is then absent).
type WebhookPayload struct {
	Record Record        `json:"record"`
	Alert  *detect.Alert `json:"alert,omitempty"`
	Undoes *Record       `json:"undoes,omitempty"`
}

// temporary marks a failure worth retrying (a network error, 408, 429,
// 5xx from the webhook).
type temporary struct{ error }

func (t temporary) Unwrap() error { return t.error }

func (p *WebhookParams) post(ctx context.Context, payload WebhookPayload) error {
	p.once.Do(func() {
		timeout := p.Timeout.D()
		if timeout == 0 {
			timeout = DefaultWebhookTimeout
		}
		p.client, p.err = sinkutil.HTTPClient(timeout, p.TLS)
	})
	if p.err != nil {
		return fmt.Errorf("webhook client: %w", p.err)
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encode webhook payload: %w", err)
	}
	h := http.Header{}
	for k, v := range p.Headers {
		h.Set(k, v)
	}
	if p.HMACSecret != "" {
		m := hmac.New(sha256.New, []byte(p.HMACSecret))
		m.Write(body)
		name := p.SignatureHeader
		if name == "" {
			name = DefaultSignatureHeader
		}
		h.Set(name, "sha256="+hex.EncodeToString(m.Sum(nil)))
	}
	retry, err := sinkutil.Post(ctx, p.client, p.URL, body, h)
	if err != nil && retry {
		return temporary{fmt.Errorf("webhook %s: %w", sinkutil.RedactURL(p.URL), err)}
	}
	if err != nil {
		return fmt.Errorf("webhook %s: %w", sinkutil.RedactURL(p.URL), err)
	}
	return nil
}

func runWebhook(ctx context.Context, x *execution) (string, bool, error) {
	p := x.p.(*WebhookParams)
	detail := "POST to " + sinkutil.RedactURL(p.URL)
	if !x.enforce {
		return detail, true, nil
	}
	rec := *x.rec
	rec.Status = StatusDone
	if err := p.post(ctx, WebhookPayload{Record: rec, Alert: x.al}); err != nil {
		return "", false, err
	}
	return detail, true, nil
}

func undoWebhook(ctx context.Context, u *undoing) (string, error) {
	p := u.p.(*WebhookParams)
	orig := u.rec
	undo := orig
	undo.ID, undo.Time, undo.Status, undo.Undoes, undo.Before = undoID(orig.ID), u.now, StatusUndone, orig.ID, nil
	if err := p.post(ctx, WebhookPayload{Record: undo, Undoes: &orig}); err != nil {
		return "", err
	}
	return "POSTed the undo to " + sinkutil.RedactURL(p.URL), nil
}
