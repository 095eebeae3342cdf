package main

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/detect"
)

// ServeConfig is the serve: section of the config file (docs/serve.md).
type ServeConfig struct {
	// Path is the webhook path (default /audit; Path/{cluster} names the
	// cluster).
	Path string `yaml:"path"`
	// TokensFile holds accepted bearer tokens, one a line.
	TokensFile string `yaml:"tokens_file"`
	// ClientCA verifies client certificates (default: the generated CA in
	// the data dir, unless TLSCert is set).
	ClientCA string `yaml:"client_ca"`
	// TLSCert and TLSKey serve the webhook with your own certificate
	// instead of the generated one.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// MaxBodyBytes bounds a request (default 64 MiB); MaxEventBytes one
	// event (default 4 MiB).
	MaxBodyBytes  int64 `yaml:"max_body_bytes"`
	MaxEventBytes int   `yaml:"max_event_bytes"`
	// RetryAfter is sent with 429 and 503 (default 5s).
	RetryAfter detect.Duration `yaml:"retry_after"`
	// SilenceAfter raises audit-pipeline-silent when a cluster that was
	// sending sends nothing for this long (default 10m). It cannot be
	// turned off; a very large value has the same effect.
	SilenceAfter detect.Duration `yaml:"silence_after"`
	// DrainTimeout bounds the graceful shutdown (default 30s).
	DrainTimeout detect.Duration `yaml:"drain_timeout"`
	// MemoryLimit is the memory in bytes serve keeps to, answering 429 as
	// it nears it (0: 90% of the container's limit; negative: none).
	MemoryLimit int64 `yaml:"memory_limit"`
}

// QueueConfig is the queue: section: the embedded JetStream queue, or
// an external one (serve_queue.go, docs/scale-out.md).
type QueueConfig struct {
	// Kind is embedded (default), nats or kafka.
	Kind  string           `yaml:"kind"`
	NATS  NATSQueueConfig  `yaml:"nats"`
	Kafka KafkaQueueConfig `yaml:"kafka"`
	// SyncAlways syncs every write to disk (also --sync-always).
	SyncAlways bool `yaml:"sync_always"`
	// MaxPendingBytes is the unprocessed data held before the webhook
	// answers 429 (default 1 GiB).
	MaxPendingBytes int64 `yaml:"max_pending_bytes"`
	// MaxBytes caps the event stream on disk (default 10 GiB).
	MaxBytes int64 `yaml:"max_bytes"`
	// Retention keeps processed events for window rebuilds (default 1h,
	// raised to the rebuild span when shorter).
	Retention detect.Duration `yaml:"retention"`
	// DedupWindow and DedupMaxKeys bound (auditID, stage) de-duplication
	// (default 10m, 1000000 keys; see ingest.Dedup).
	DedupWindow  detect.Duration `yaml:"dedup_window"`
	DedupMaxKeys int             `yaml:"dedup_max_keys"`
}

// serveSettings are the decoded serve and queue sections with defaults.
type serveSettings struct {
	Serve ServeConfig
	Queue QueueConfig
}

// decodeNode decodes a config section strictly; an empty node leaves dst.
// It decodes the node as loaded, so errors carry the file's line numbers.
func decodeNode(n *yaml.Node, name string, dst any) error {
	if n == nil || n.Kind == 0 {
		return nil
	}
	if err := checkKeys(n, reflect.TypeOf(dst).Elem(), name); err != nil {
		return err
	}
	if err := n.Decode(dst); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// checkKeys reports the keys of mapping n that struct type t has no yaml
// field for, recursively: yaml.Node.Decode has no strict mode.
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind != yaml.MappingNode || t.Kind() != reflect.Struct {
		return nil
	}
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			fields[tag] = t.Field(i).Type
		}
	}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		ft, ok := fields[k.Value]
		if !ok {
			errs = append(errs, fmt.Errorf("%s.%s: unknown field (line %d)", path, k.Value, k.Line))
			continue
		}
		errs = append(errs, checkKeys(n.Content[i+1], ft, path+"."+k.Value))
	}
	return errors.Join(errs...)
}

func serveConfig(cfg *Config) (serveSettings, error) {
	s := serveSettings{}
	if err := errors.Join(decodeNode(&cfg.Serve, "serve", &s.Serve), decodeNode(&cfg.Queue, "queue", &s.Queue)); err != nil {
		return s, usageError{err}
	}
	sv := &s.Serve
	if sv.SilenceAfter == 0 {
		sv.SilenceAfter = detect.Duration(10 * time.Minute)
	}
	if sv.DrainTimeout == 0 {
		sv.DrainTimeout = detect.Duration(30 * time.Second)
	}
	var errs []error
	if sv.SilenceAfter < 0 || sv.DrainTimeout < 0 || sv.RetryAfter < 0 {
		errs = append(errs, errors.New("serve: durations must not be negative"))
	}
	if (sv.TLSCert == "") != (sv.TLSKey == "") {
		errs = append(errs, errors.New("serve: set both tls_cert and tls_key, or neither"))
	}
	if sv.MaxBodyBytes < 0 || sv.MaxEventBytes < 0 {
		errs = append(errs, errors.New("serve: size limits must not be negative"))
	}
	if sv.MaxBodyBytes > 0 && sv.MaxBodyBytes < 32<<20 {
		errs = append(errs, fmt.Errorf("serve.max_body_bytes %d is under 32 MiB, which a default apiserver batch with bodies can exceed", sv.MaxBodyBytes))
	}
	q := &s.Queue
	if q.MaxPendingBytes < 0 || q.MaxBytes < 0 || q.Retention < 0 || q.DedupWindow < 0 || q.DedupMaxKeys < 0 {
		errs = append(errs, errors.New("queue: limits must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return s, usageError{err}
	}
	return s, nil
}

// readTokens reads bearer tokens, one a line; blank lines and lines
// starting with # are skipped.
func readTokens(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("read serve.tokens_file: %w", err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, usagef("serve.tokens_file %s holds no token", path)
	}
	return out, nil
}
