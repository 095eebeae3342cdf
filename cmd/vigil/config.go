package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/detect"
)

// Config is the file given with --config (docs/config.md). Flags override
// its values. Sections owned by other components (sinks, routes, serve,
// queue, sources) are kept as YAML and decoded by them.
type Config struct {
	// Cluster names the cluster in alerts when the source does not.
	Cluster string      `yaml:"cluster"`
	Rules   RulesConfig `yaml:"rules"`
	// Lists extend (or, with replace: true, replace) the rule packs' lists.
	Lists map[string]detect.ListOverride `yaml:"lists"`
	// Overrides tune rules by id without copying them.
	Overrides map[string]detect.Override `yaml:"overrides"`
	Detect    DetectConfig               `yaml:"detect"`

	Sinks  yaml.Node `yaml:"sinks"`
	Routes yaml.Node `yaml:"routes"`
	Serve  yaml.Node `yaml:"serve"`
	Queue  yaml.Node `yaml:"queue"`
	// Sources are the managed services' live audit log sources
	// (docs/sources.md), decoded in serve_sources.go.
	Sources yaml.Node `yaml:"sources"`
	// Responses are decoded by sinks/respond (docs/responses.md).
	Responses yaml.Node `yaml:"responses"`
}

// RulesConfig selects rule packs.
type RulesConfig struct {
	// Paths are rule files or directories added to the built-in packs.
	Paths []string `yaml:"paths"`
	// Builtin loads the embedded packs (default true).
	Builtin *bool `yaml:"builtin"`
	// Disable lists rule ids to turn off.
	Disable []string `yaml:"disable"`
}

// DetectConfig tunes the engine.
type DetectConfig struct {
	// Workers is the number of matching goroutines (default: all cores).
	Workers int `yaml:"workers"`
	// Lateness is how far behind the newest event an event may be and still
	// count in windows (default 5m).
	Lateness detect.Duration `yaml:"lateness"`
	// MaxKeysPerRule bounds window state per rule (default 100000).
	MaxKeysPerRule int `yaml:"max_keys_per_rule"`
	// DistinctExact is how many values a distinct window counts exactly
	// before it estimates (default 1000).
	DistinctExact int `yaml:"distinct_exact"`
}

// secretRef matches ${env:NAME} and ${file:PATH} in string values.
var secretRef = regexp.MustCompile(`\$\{(env|file):([^}]+)\}`)

// loadConfig reads a config file; an empty path gives the defaults. Unknown
// keys are errors; ${env:NAME} and ${file:PATH} in string values are
// replaced by the variable or the file's content (trailing newline removed),
// so secrets stay out of the file.
func loadConfig(path string) (*Config, error) {
	cfg := &Config{}
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("read config: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, usagef("config %s: %w", path, err)
	}
	if len(root.Content) == 0 {
		return cfg, nil
	}
	// The file as written is decoded strictly, so that errors name its
	// lines; the values come from the tree with the secrets expanded, whose
	// sections kept as YAML (sinks, serve ...) keep the file's lines too.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&Config{}); err != nil && !errors.Is(err, io.EOF) {
		return nil, usagef("config %s: %w", path, err)
	}
	if err := expandSecrets(&root); err != nil {
		return nil, usagef("config %s: %w", path, err)
	}
	if err := root.Decode(cfg); err != nil {
		return nil, usagef("config %s: %w", path, err)
	}
	if cfg.Detect.Workers < 0 {
		return nil, usagef("config %s: detect.workers must not be negative", path)
	}
	if cfg.Detect.MaxKeysPerRule < 0 {
		return nil, usagef("config %s: detect.max_keys_per_rule must not be negative", path)
	}
	if cfg.Detect.DistinctExact < 0 {
		return nil, usagef("config %s: detect.distinct_exact must not be negative", path)
	}
	if cfg.Detect.Lateness < 0 {
		return nil, usagef("config %s: detect.lateness must not be negative", path)
	}
	return cfg, nil
}

func expandSecrets(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && strings.Contains(n.Value, "${") {
		var errs []error
		n.Value = secretRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			sub := secretRef.FindStringSubmatch(m)
			switch sub[1] {
			case "env":
				v, ok := os.LookupEnv(sub[2])
				if !ok {
					errs = append(errs, fmt.Errorf("line %d: environment variable %s is not set", n.Line, sub[2]))
				}
				return v
			default:
				b, err := os.ReadFile(sub[2])
				if err != nil {
					errs = append(errs, fmt.Errorf("line %d: read secret file: %w", n.Line, err))
				}
				return strings.TrimRight(string(b), "\r\n")
			}
		})
		return errors.Join(errs...)
	}
	var errs []error
	for _, c := range n.Content {
		errs = append(errs, expandSecrets(c))
	}
	return errors.Join(errs...)
}

// lateness returns the configured allowed lateness or the default.
func (c *Config) lateness() time.Duration {
	if c.Detect.Lateness > 0 {
		return c.Detect.Lateness.D()
	}
	return detect.DefaultLateness
}
