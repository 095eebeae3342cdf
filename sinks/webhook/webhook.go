// Package webhook POSTs alerts as JSON to an HTTP endpoint, one alert per
// request or a batch as a JSON array, optionally signed with HMAC-SHA256.
package webhook

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// Defaults.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultSignatureHeader = "X-Vigil-Signature"
)

// Config configures a webhook sink.
type Config struct {
	// Name is the sink's name from the config (set by the builder).
	Name string `yaml:"-"`
	// URL receives the POSTs.
	URL string `yaml:"url"`
	// Headers are added to every request (for example an Authorization
	// header read with ${env:NAME}).
	Headers map[string]string `yaml:"headers"`
	// Batch sends a JSON array of alerts per request instead of one JSON
	// object per alert.
	Batch bool `yaml:"batch"`
	// HMACSecret, when set, signs the body: SignatureHeader carries
	// "sha256=" and the hex HMAC-SHA256 of the exact body bytes.
	HMACSecret      string `yaml:"hmac_secret"`
	SignatureHeader string `yaml:"signature_header"`
	// Timeout bounds one request (default 10s).
	Timeout detect.Duration `yaml:"timeout"`
	TLS     sinkutil.TLS    `yaml:"tls"`
}

// Validate checks the config; field paths are relative to the sink.
func (c Config) Validate() error {
	errs := []error{sinkutil.CheckURL("url", c.URL)}
	if c.Timeout < 0 {
		errs = append(errs, sinkutil.Fieldf("timeout", "must not be negative"))
	}
	if c.SignatureHeader != "" && c.HMACSecret == "" {
		errs = append(errs, sinkutil.Fieldf("signature_header", "set without hmac_secret"))
	}
	for k := range c.Headers {
		if http.CanonicalHeaderKey(k) == "Content-Type" || http.CanonicalHeaderKey(k) == http.CanonicalHeaderKey(c.signatureHeader()) {
			errs = append(errs, sinkutil.Fieldf("headers."+k, "is set by the sink"))
		}
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, sinkutil.Prefix("tls", err))
	}
	return errors.Join(errs...)
}

func (c Config) signatureHeader() string {
	if c.SignatureHeader == "" {
		return DefaultSignatureHeader
	}
	return c.SignatureHeader
}

// Sink posts alerts. It is safe for concurrent use.
type Sink struct {
	cfg    Config
	client *http.Client
	header http.Header
}

// New builds the sink.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	timeout := cmp.Or(cfg.Timeout.D(), DefaultTimeout)
	c, err := sinkutil.HTTPClient(timeout, cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("webhook %s: %w", cfg.Name, err)
	}
	h := http.Header{}
	for k, v := range cfg.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	return &Sink{cfg: cfg, client: c, header: h}, nil
}

// MaxBatch is the most alerts one Send should carry: a batch webhook takes
// many, a single-alert webhook one (so a retry never repeats a delivered
// alert).
func (s *Sink) MaxBatch() int {
	if s.cfg.Batch {
		return 100
	}
	return 1
}

// Send posts the alerts: one request with a JSON array in batch mode,
// otherwise one request per alert.
func (s *Sink) Send(ctx context.Context, alerts ...detect.Alert) (bool, error) {
	if s.cfg.Batch {
		body, err := json.Marshal(alerts)
		if err != nil {
			return false, fmt.Errorf("encode alerts: %w", err)
		}
		return s.post(ctx, body)
	}
	for i := range alerts {
		body, err := json.Marshal(&alerts[i])
		if err != nil {
			return false, fmt.Errorf("encode alert %s: %w", alerts[i].Rule, err)
		}
		if retry, err := s.post(ctx, body); err != nil {
			return retry, err
		}
	}
	return false, nil
}

func (s *Sink) post(ctx context.Context, body []byte) (bool, error) {
	h := s.header
	if s.cfg.HMACSecret != "" {
		h = h.Clone()
		h.Set(s.cfg.signatureHeader(), Sign([]byte(s.cfg.HMACSecret), body))
	}
	return sinkutil.Post(ctx, s.client, s.cfg.URL, body, h)
}

// Sign returns the signature header value for body: "sha256=" and the hex
// HMAC-SHA256. Receivers compute the same over the raw body and compare in
// constant time.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (s *Sink) String() string { return "webhook[" + s.cfg.Name + "]" }
