// Package alertmanager posts alerts to Prometheus Alertmanager's v2 API
// (POST /api/v2/alerts), to every configured instance as Alertmanager's own
// clients do for a highly available cluster.
package alertmanager

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// Defaults.
const (
	DefaultTimeout = 10 * time.Second
	// DefaultResolveAfter is how long after its last event an alert stays
	// firing: endsAt = lastTime + ResolveAfter, so a burst that stops
	// resolves on its own.
	DefaultResolveAfter = 15 * time.Minute
)

// Config configures an Alertmanager sink.
type Config struct {
	// Name is the sink's name from the config (set by the builder).
	Name string `yaml:"-"`
	// URL is one Alertmanager base URL; URLs lists several (every one gets
	// every alert). Set one or the other.
	URL  string   `yaml:"url"`
	URLs []string `yaml:"urls"`
	// Headers are added to every request (for example Authorization).
	Headers map[string]string `yaml:"headers"`
	// ResolveAfter sets endsAt relative to the alert's last event.
	ResolveAfter detect.Duration `yaml:"resolve_after"`
	// GeneratorURL, if set, is sent as generatorURL (a link back to vigil
	// or a dashboard).
	GeneratorURL string          `yaml:"generator_url"`
	Timeout      detect.Duration `yaml:"timeout"`
	TLS          sinkutil.TLS    `yaml:"tls"`
}

func (c Config) urls() []string {
	if c.URL != "" {
		return append([]string{c.URL}, c.URLs...)
	}
	return c.URLs
}

// Validate checks the config; field paths are relative to the sink.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.URL == "" && len(c.URLs) == 0:
		errs = append(errs, &sinkutil.FieldError{Field: "url", Err: sinkutil.ErrRequired})
	case c.URL != "":
		errs = append(errs, sinkutil.CheckURL("url", c.URL))
	}
	for i, u := range c.URLs {
		errs = append(errs, sinkutil.CheckURL(fmt.Sprintf("urls[%d]", i), u))
	}
	if c.ResolveAfter < 0 {
		errs = append(errs, sinkutil.Fieldf("resolve_after", "must not be negative"))
	}
	if c.Timeout < 0 {
		errs = append(errs, sinkutil.Fieldf("timeout", "must not be negative"))
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, sinkutil.Prefix("tls", err))
	}
	return errors.Join(errs...)
}

// Sink posts alerts to Alertmanager. It is safe for concurrent use.
type Sink struct {
	cfg     Config
	urls    []string
	resolve time.Duration
	client  *http.Client
	header  http.Header
}

// New builds the sink.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	timeout := cmp.Or(cfg.Timeout.D(), DefaultTimeout)
	c, err := sinkutil.HTTPClient(timeout, cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("alertmanager %s: %w", cfg.Name, err)
	}
	s := &Sink{cfg: cfg, client: c, resolve: cfg.ResolveAfter.D(), header: http.Header{}}
	if s.resolve == 0 {
		s.resolve = DefaultResolveAfter
	}
	for _, u := range cfg.urls() {
		s.urls = append(s.urls, strings.TrimRight(u, "/")+"/api/v2/alerts")
	}
	for k, v := range cfg.Headers {
		s.header.Set(k, v)
	}
	return s, nil
}

// MaxBatch is the most alerts per POST.
func (s *Sink) MaxBatch() int { return 500 }

// PostableAlert is one element of the v2 API's postableAlerts body.
type PostableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// mitreTechnique matches ATT&CK technique ids such as T1613 or T1552.007.
var mitreTechnique = regexp.MustCompile(`^T\d{4}(\.\d{3})?$`)

// Payload converts alerts to the v2 API's body.
func (s *Sink) Payload(alerts []detect.Alert) []PostableAlert {
	out := make([]PostableAlert, 0, len(alerts))
	for i := range alerts {
		a := &alerts[i]
		labels := map[string]string{
			"alertname":   a.Rule,
			"severity":    a.Severity.String(),
			"fingerprint": a.Fingerprint,
		}
		set := func(k, v string) {
			if v != "" {
				labels[k] = v
			}
		}
		set("user", a.User.Username)
		if a.ObjectRef != nil {
			set("namespace", a.ObjectRef.Namespace)
		}
		set("cluster", a.Cluster)
		var mitre []string
		for _, t := range a.Tags {
			if mitreTechnique.MatchString(t) {
				mitre = append(mitre, t)
			}
		}
		set("mitre", strings.Join(mitre, ","))
		ann := map[string]string{"summary": a.Message, "title": a.Title}
		if a.Message == "" {
			ann["summary"] = a.Title
		}
		if a.Description != "" {
			ann["description"] = a.Description
		}
		if len(a.AuditIDs) > 0 {
			ann["auditIDs"] = strings.Join(a.AuditIDs, ",")
		}
		start, last := a.FirstTime, a.LastTime
		if start.IsZero() {
			start = a.Time
		}
		if last.Before(start) {
			last = start
		}
		out = append(out, PostableAlert{Labels: labels, Annotations: ann,
			StartsAt: start.UTC(), EndsAt: last.Add(s.resolve).UTC(), GeneratorURL: s.cfg.GeneratorURL})
	}
	return out
}

// Send posts the alerts to every URL. A failure is retried if any URL's
// failure is retryable; resending to the instances that accepted is
// harmless, Alertmanager merges alerts with equal labels.
func (s *Sink) Send(ctx context.Context, alerts ...detect.Alert) (bool, error) {
	body, err := json.Marshal(s.Payload(alerts))
	if err != nil {
		return false, fmt.Errorf("encode alerts: %w", err)
	}
	var errs []error
	retry := false
	for i, u := range s.urls {
		r, err := sinkutil.Post(ctx, s.client, u, body, s.header)
		if err != nil {
			retry = retry || r
			errs = append(errs, fmt.Errorf("alertmanager %d (%s): %w", i, sinkutil.RedactURL(u), err))
		}
	}
	return retry, errors.Join(errs...)
}

func (s *Sink) String() string { return "alertmanager[" + s.cfg.Name + "]" }
