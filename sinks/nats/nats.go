// Package nats publishes alerts as JSON to a NATS subject, on an external
// server or on the connection of vigil's embedded one.
package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// DefaultTimeout bounds connecting and one flush.
const DefaultTimeout = 10 * time.Second

// Config configures a NATS sink.
type Config struct {
	// Name is the sink's name from the config (set by the builder).
	Name string `yaml:"-"`
	// URL of the server(s), comma separated. Empty means the connection
	// the process already has (the embedded server in vigil serve).
	URL string `yaml:"url"`
	// Subject to publish to; "{rule}" and "{severity}" are replaced by the
	// alert's rule id and severity.
	Subject string `yaml:"subject"`
	// JetStream publishes with an acknowledgement from a stream that holds
	// the subject, and the alert fingerprint as Nats-Msg-Id for dedup.
	JetStream bool `yaml:"jetstream"`
	// CredsFile, Token or User/Password authenticate to an external server.
	CredsFile string          `yaml:"creds_file"`
	Token     string          `yaml:"token"`
	User      string          `yaml:"user"`
	Password  string          `yaml:"password"`
	Timeout   detect.Duration `yaml:"timeout"`
	TLS       sinkutil.TLS    `yaml:"tls"`
}

// Validate checks the config; field paths are relative to the sink.
func (c Config) Validate() error {
	var errs []error
	if c.Subject == "" {
		errs = append(errs, &sinkutil.FieldError{Field: "subject", Err: sinkutil.ErrRequired})
	} else if strings.ContainsAny(c.Subject, " \t*>") {
		errs = append(errs, sinkutil.Fieldf("subject", "%q must not contain spaces or wildcards", c.Subject))
	}
	if (c.User == "") != (c.Password == "") {
		errs = append(errs, sinkutil.Fieldf("user", "user and password must be set together"))
	}
	if c.Timeout < 0 {
		errs = append(errs, sinkutil.Fieldf("timeout", "must not be negative"))
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, sinkutil.Prefix("tls", err))
	}
	return errors.Join(errs...)
}

// Sink publishes alerts. It is safe for concurrent use.
type Sink struct {
	cfg     Config
	nc      *nats.Conn
	own     bool // nc was opened by New and is closed by Close
	js      jetstream.JetStream
	timeout time.Duration
}

// New connects to cfg.URL, or uses shared (which must then be non-nil) when
// the URL is empty. The connection retries in the background, so a server
// that is down at start makes Send fail and retry rather than New.
func New(cfg Config, shared *nats.Conn) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, timeout: cfg.Timeout.D()}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if cfg.URL == "" {
		if shared == nil {
			return nil, &sinkutil.FieldError{Field: "url", Err: errors.New("required: no embedded NATS connection in this mode")}
		}
		s.nc = shared
	} else {
		opts := []nats.Option{nats.Name("vigil-sink-" + cfg.Name), nats.Timeout(s.timeout),
			nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1)}
		switch {
		case cfg.CredsFile != "":
			opts = append(opts, nats.UserCredentials(cfg.CredsFile))
		case cfg.Token != "":
			opts = append(opts, nats.Token(cfg.Token))
		case cfg.User != "":
			opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
		}
		tc, err := cfg.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("nats %s: %w", cfg.Name, err)
		}
		if tc != nil {
			opts = append(opts, nats.Secure(tc))
		}
		nc, err := nats.Connect(cfg.URL, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect to nats for sink %s: %w", cfg.Name, err)
		}
		s.nc, s.own = nc, true
	}
	if cfg.JetStream {
		js, err := jetstream.New(s.nc)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("nats %s: open jetstream: %w", cfg.Name, err)
		}
		s.js = js
	}
	return s, nil
}

// MaxBatch is the most alerts per Send.
func (s *Sink) MaxBatch() int { return 200 }

// subject expands the subject template for a.
func (s *Sink) subject(a *detect.Alert) string {
	if !strings.Contains(s.cfg.Subject, "{") {
		return s.cfg.Subject
	}
	return strings.NewReplacer("{rule}", Token(a.Rule), "{severity}", a.Severity.String()).Replace(s.cfg.Subject)
}

// Token makes s usable as one subject token: characters NATS gives a
// meaning to become "_".
func Token(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, s)
}

// Send publishes one message per alert and waits until the server has them
// (a flush, or each JetStream acknowledgement).
func (s *Sink) Send(ctx context.Context, alerts ...detect.Alert) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if s.js != nil {
		futures := make([]jetstream.PubAckFuture, 0, len(alerts))
		for i := range alerts {
			m, err := s.msg(&alerts[i])
			if err != nil {
				return false, err
			}
			f, err := s.js.PublishMsgAsync(m, jetstream.WithMsgID(alerts[i].Fingerprint))
			if err != nil {
				return true, fmt.Errorf("publish alert: %w", err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return true, fmt.Errorf("publish alert: %w", err)
			case <-ctx.Done():
				return true, fmt.Errorf("publish alert: %w", ctx.Err())
			}
		}
		return false, nil
	}
	for i := range alerts {
		m, err := s.msg(&alerts[i])
		if err != nil {
			return false, err
		}
		if err := s.nc.PublishMsg(m); err != nil {
			return true, fmt.Errorf("publish alert: %w", err)
		}
	}
	if err := s.nc.FlushWithContext(ctx); err != nil {
		return true, fmt.Errorf("flush alerts: %w", err)
	}
	return false, nil
}

func (s *Sink) msg(a *detect.Alert) (*nats.Msg, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode alert %s: %w", a.Rule, err)
	}
	m := nats.NewMsg(s.subject(a))
	m.Data = b
	m.Header.Set("Content-Type", "application/json")
	m.Header.Set("Vigil-Rule", a.Rule)
	m.Header.Set("Vigil-Severity", a.Severity.String())
	return m, nil
}

// Close closes a connection New opened.
func (s *Sink) Close() error {
	if s.own && s.nc != nil {
		s.nc.Close()
	}
	return nil
}

func (s *Sink) String() string { return "nats[" + s.cfg.Name + "]" }
