// Package kafka produces alerts as JSON to a Kafka topic with
// github.com/segmentio/kafka-go, keyed by rule and group key so the alerts
// of one key stay in order on one partition.
package kafka

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// Defaults and limits.
const (
	// MaxBatchBytes is the largest produce request vigil sends: 1 MiB, the
	// broker's default message.max.bytes.
	MaxBatchBytes  = 1 << 20
	DefaultTimeout = 10 * time.Second
	// DefaultBatchTimeout is how long the writer waits to fill a batch; a
	// Send waits for its own messages, so this is short.
	DefaultBatchTimeout = 10 * time.Millisecond
)

// Config configures a Kafka sink.
type Config struct {
	// Name is the sink's name from the config (set by the builder).
	Name    string   `yaml:"-"`
	Brokers []string `yaml:"brokers"`
	Topic   string   `yaml:"topic"`
	// BatchBytes bounds one produce request (default and maximum 1 MiB).
	BatchBytes int `yaml:"batch_bytes"`
	// AutoCreateTopic lets the writer create a missing topic.
	AutoCreateTopic bool `yaml:"auto_create_topic"`
	// Username and Password enable SASL/PLAIN (use TLS with it).
	Username string          `yaml:"username"`
	Password string          `yaml:"password"`
	Timeout  detect.Duration `yaml:"timeout"`
	TLS      *sinkutil.TLS   `yaml:"tls"`
}

// Validate checks the config; field paths are relative to the sink.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, &sinkutil.FieldError{Field: "brokers", Err: sinkutil.ErrRequired})
	}
	for i, b := range c.Brokers {
		if !strings.Contains(b, ":") {
			errs = append(errs, sinkutil.Fieldf(fmt.Sprintf("brokers[%d]", i), "%q is not host:port", b))
		}
	}
	if c.Topic == "" {
		errs = append(errs, &sinkutil.FieldError{Field: "topic", Err: sinkutil.ErrRequired})
	}
	if c.BatchBytes < 0 || c.BatchBytes > MaxBatchBytes {
		errs = append(errs, sinkutil.Fieldf("batch_bytes", "must be between 1 and %d", MaxBatchBytes))
	}
	if (c.Username == "") != (c.Password == "") {
		errs = append(errs, sinkutil.Fieldf("username", "username and password must be set together"))
	}
	if c.Timeout < 0 {
		errs = append(errs, sinkutil.Fieldf("timeout", "must not be negative"))
	}
	if c.TLS != nil {
		if err := c.TLS.Validate(); err != nil {
			errs = append(errs, sinkutil.Prefix("tls", err))
		}
	}
	return errors.Join(errs...)
}

// Sink produces alerts. It is safe for concurrent use.
type Sink struct {
	cfg Config
	w   *kafkago.Writer
}

// New builds the writer; it connects on the first Send.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	timeout := cmp.Or(cfg.Timeout.D(), DefaultTimeout)
	batchBytes := cfg.BatchBytes
	if batchBytes == 0 {
		batchBytes = MaxBatchBytes
	}
	tr := &kafkago.Transport{DialTimeout: timeout, ClientID: "vigil"}
	if cfg.TLS != nil {
		tc, err := cfg.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("kafka %s: %w", cfg.Name, err)
		}
		tr.TLS = tc
	}
	if cfg.Username != "" {
		tr.SASL = plain.Mechanism{Username: cfg.Username, Password: cfg.Password}
	}
	w := &kafkago.Writer{
		Addr:                   kafkago.TCP(cfg.Brokers...),
		Topic:                  cfg.Topic,
		Balancer:               &kafkago.Hash{},
		BatchBytes:             int64(batchBytes),
		BatchSize:              1000,
		BatchTimeout:           DefaultBatchTimeout,
		ReadTimeout:            timeout,
		WriteTimeout:           timeout,
		RequiredAcks:           kafkago.RequireAll,
		AllowAutoTopicCreation: cfg.AutoCreateTopic,
		// The sinks' one retry loop retries; the writer must not hide
		// failures behind its own.
		MaxAttempts: 1,
		Transport:   tr,
	}
	return &Sink{cfg: cfg, w: w}, nil
}

// MaxBatch is the most alerts per Send.
func (s *Sink) MaxBatch() int { return 500 }

// Key is the message key of an alert: rule id and group key.
func Key(a *detect.Alert) []byte { return []byte(a.Rule + "/" + a.GroupKey) }

// Send produces one message per alert and waits for the brokers' acks.
func (s *Sink) Send(ctx context.Context, alerts ...detect.Alert) (bool, error) {
	msgs := make([]kafkago.Message, 0, len(alerts))
	for i := range alerts {
		b, err := json.Marshal(&alerts[i])
		if err != nil {
			return false, fmt.Errorf("encode alert %s: %w", alerts[i].Rule, err)
		}
		if len(b) > s.maxBytes() {
			return false, fmt.Errorf("alert %s is %d bytes, over the %d-byte batch limit", alerts[i].Rule, len(b), s.maxBytes())
		}
		msgs = append(msgs, kafkago.Message{Key: Key(&alerts[i]), Value: b, Headers: []kafkago.Header{
			{Key: "vigil-rule", Value: []byte(alerts[i].Rule)},
			{Key: "vigil-severity", Value: []byte(alerts[i].Severity.String())},
			{Key: "vigil-fingerprint", Value: []byte(alerts[i].Fingerprint)},
		}})
	}
	if err := s.w.WriteMessages(ctx, msgs...); err != nil {
		if errors.Is(err, kafkago.MessageSizeTooLarge) {
			return false, fmt.Errorf("produce alerts: %w", err)
		}
		return true, fmt.Errorf("produce alerts: %w", err)
	}
	return false, nil
}

func (s *Sink) maxBytes() int {
	if s.cfg.BatchBytes > 0 {
		return s.cfg.BatchBytes
	}
	return MaxBatchBytes
}

// Close flushes and closes the writer.
func (s *Sink) Close() error { return s.w.Close() }

func (s *Sink) String() string { return "kafka[" + s.cfg.Name + "]" }
