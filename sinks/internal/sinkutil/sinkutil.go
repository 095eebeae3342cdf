// Package sinkutil holds what the sink packages share: field errors with
// paths, HTTP delivery with status classification, TLS options and strict
// YAML decoding. It is internal so that the sink packages need not import
// the sinks package, which imports them.
package sinkutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrRequired is the cause of a FieldError for a missing value.
var ErrRequired = errors.New("required")

// FieldError is a configuration error at a field path such as
// "sinks[1].url".
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Fieldf returns a FieldError with a formatted cause.
func Fieldf(field, format string, a ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, a...)}
}

// Prefix puts prefix in front of the field path of every error in err (a
// single error or an errors.Join of them), so a sink's "url: required"
// becomes "sinks[1].url: required".
func Prefix(prefix string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Prefix(prefix, e))
		}
		return errors.Join(out...)
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Field: prefix + "." + fe.Field, Err: fe.Err}
	}
	return &FieldError{Field: prefix, Err: err}
}

// StatusError is a non-2xx answer from an HTTP endpoint.
type StatusError struct {
	Code int
	// After is the server's Retry-After, zero when absent.
	After time.Duration
	// Body is the start of the response body, for the log.
	Body string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("unexpected status %d", e.Code)
	}
	return fmt.Sprintf("unexpected status %d: %s", e.Code, e.Body)
}

// RetryAfter returns the delay the server asked for (zero when none).
func (e *StatusError) RetryAfter() time.Duration { return e.After }

// Retryable reports whether an HTTP status is worth retrying: 408, 429 and
// 5xx are; any other 4xx means the request itself is wrong.
func Retryable(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// ParseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Post sends body to u with the given headers. It reports whether a failure
// is worth retrying. Errors never contain the URL: webhook URLs (Slack's in
// particular) are credentials.
func Post(ctx context.Context, c *http.Client, u string, body []byte, header http.Header) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("build request: %w", scrubURL(err))
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return true, fmt.Errorf("post: %w", scrubURL(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	se := &StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(snippet)),
		After: ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	return Retryable(resp.StatusCode), se
}

// scrubURL drops the URL from a *url.Error, keeping the operation and cause.
func scrubURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

// RedactURL returns u without user info, path beyond the host and query,
// for String() and logs.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "<invalid url>"
	}
	return p.Scheme + "://" + p.Host
}

// CheckURL validates an http(s) URL at field.
func CheckURL(field, u string) error {
	if u == "" {
		return &FieldError{Field: field, Err: ErrRequired}
	}
	p, err := url.Parse(u)
	if err != nil {
		return Fieldf(field, "not a valid URL")
	}
	if p.Scheme != "http" && p.Scheme != "https" {
		return Fieldf(field, "scheme must be http or https, got %q", p.Scheme)
	}
	if p.Host == "" {
		return Fieldf(field, "missing host")
	}
	return nil
}

// TLS configures a client's TLS.
type TLS struct {
	// CAFile is a PEM bundle of CAs to trust instead of the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate for mutual TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the server certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables server certificate checks (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Validate checks that certificate and key come together.
func (t TLS) Validate() error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return Fieldf("cert_file", "cert_file and key_file must be set together")
	}
	return nil
}

// Config builds a *tls.Config; nil when nothing is set.
func (t TLS) Config() (*tls.Config, error) {
	if t == (TLS{}) {
		return nil, nil
	}
	c := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates found", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// HTTPClient returns a client with the timeout and TLS options.
func HTTPClient(timeout time.Duration, t TLS) (*http.Client, error) {
	tc, err := t.Config()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &http.Client{Timeout: timeout, Transport: tr}, nil
}

// SplitMapping splits a mapping node in two: the keys common names, and
// the rest (the settings of one type), each keeping n's position.
func SplitMapping(n *yaml.Node, common map[string]bool) (commonNode, typedNode *yaml.Node) {
	commonNode = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	typedNode = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		dst := typedNode
		if common[n.Content[i].Value] {
			dst = commonNode
		}
		dst.Content = append(dst.Content, n.Content[i], n.Content[i+1])
	}
	return commonNode, typedNode
}

// DecodeStrict decodes n into v (a pointer to a struct) and reports every
// key that v has no field for, with its path below prefix and its line.
func DecodeStrict(prefix string, n *yaml.Node, v any) error {
	errs := unknownFields(prefix, n, reflect.TypeOf(v))
	if err := n.Decode(v); err != nil {
		errs = append(errs, &FieldError{Field: prefix, Err: err})
	}
	return errors.Join(errs...)
}

func unknownFields(path string, n *yaml.Node, t reflect.Type) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n == nil {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // Decode reports the type mismatch
		}
		if reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
			return nil
		}
		fields := map[string]reflect.Type{}
		collectFields(t, fields)
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			ft, ok := fields[k]
			if !ok {
				errs = append(errs, Fieldf(join(path, k), "unknown field (line %d)", n.Content[i].Line))
				continue
			}
			errs = append(errs, unknownFields(join(path, k), n.Content[i+1], ft)...)
		}
		return errs
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		var errs []error
		for i, c := range n.Content {
			errs = append(errs, unknownFields(fmt.Sprintf("%s[%d]", path, i), c, t.Elem())...)
		}
		return errs
	}
	return nil
}

func collectFields(t reflect.Type, into map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			collectFields(f.Type, into)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		into[name] = f.Type
	}
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
