package sinks

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"regexp"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/file"
	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// Defaults for delivery.
const (
	DefaultBuffer       = 10000
	DefaultRetryInitial = 500 * time.Millisecond
	DefaultRetryMax     = time.Minute
)

// Config is the sinks: list and the routes: table of the config file.
type Config struct {
	Sinks  []SinkConfig
	Routes []RouteConfig
}

// SinkConfig is one entry of sinks:. Name, type and the delivery and
// routing fields are common to all types; the other keys belong to the
// type and are decoded into Settings.
type SinkConfig struct {
	// Name identifies the sink in routes, logs, metrics and its durable
	// consumer (sink-<name>): letters, digits, '-' and '_'.
	Name     string `yaml:"name"`
	Type     string `yaml:"type"`
	Filter   `yaml:",inline"`
	Delivery `yaml:",inline"`

	// Settings are the type's own keys: a pointer to the Config of the
	// type's package (*webhook.Config for webhook, *file.Config for
	// stdout and file). Nil means the type's zero settings.
	Settings Settings `yaml:"-"`
}

// Filter selects the alerts a sink receives.
type Filter struct {
	// MinSeverity drops alerts below it (default: none dropped).
	MinSeverity detect.Severity `yaml:"min_severity"`
	// Include, when not empty, keeps only alerts whose rule id or one of
	// whose tags matches (globs, e.g. "attack.*").
	Include Match `yaml:"include"`
	// Exclude drops alerts whose rule id or one of whose tags matches.
	Exclude Match `yaml:"exclude"`
}

// Match lists rule ids and tags, as globs (path.Match syntax).
type Match struct {
	Rules []string `yaml:"rules"`
	Tags  []string `yaml:"tags"`
}

// Delivery tunes buffering, batching and retries of one sink.
type Delivery struct {
	// Buffer is the in-memory queue length (replay mode, default 10000).
	Buffer int `yaml:"buffer"`
	// OnFull is what Dispatch does when the buffer is full: "drop" (count
	// and log; the default for network sinks) or "block" (the default for
	// stdout and file, whose output replay must not lose).
	OnFull string `yaml:"on_full"`
	// BatchSize caps alerts per Send (default: what the sink's API allows).
	BatchSize int         `yaml:"batch_size"`
	Retry     RetryConfig `yaml:"retry"`
}

// RetryConfig is the backoff of the retry loop: delays grow from Initial
// by doubling to Max, each with jitter; a Retry-After longer than the
// delay wins. MaxElapsed gives up on a batch (dead-lettering it); 0 means
// retry until delivered or shut down.
type RetryConfig struct {
	Initial    detect.Duration `yaml:"initial"`
	Max        detect.Duration `yaml:"max"`
	MaxElapsed detect.Duration `yaml:"max_elapsed"`
}

// RouteConfig is one entry of routes:.
type RouteConfig struct {
	// Namespaces are globs over the alert's objectRef.namespace ("*" also
	// matches cluster-scoped alerts, whose namespace is empty).
	Namespaces []string `yaml:"namespaces"`
	// Sinks receive the matching alerts.
	Sinks []string `yaml:"sinks"`
	// Continue goes on to the next routes after a match.
	Continue bool `yaml:"continue"`
	// Default marks the route for alerts no other route matched; it has
	// no namespaces. A non-empty routes table needs exactly one.
	Default bool `yaml:"default"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// DecodeConfig decodes the sinks: and routes: sections (either may be nil
// or empty). Unknown fields are errors; all errors are returned joined,
// each with its field path (sinks[1].url: required).
func DecodeConfig(sinksNode, routesNode *yaml.Node) (Config, error) {
	var cfg Config
	var errs []error
	if n := content(sinksNode); n != nil {
		if n.Kind != yaml.SequenceNode {
			errs = append(errs, sinkutil.Fieldf("sinks", "must be a list (line %d)", n.Line))
		} else {
			for i, item := range n.Content {
				sc, err := decodeSink(fmt.Sprintf("sinks[%d]", i), item)
				errs = append(errs, err)
				cfg.Sinks = append(cfg.Sinks, sc)
			}
		}
	}
	if n := content(routesNode); n != nil {
		errs = append(errs, sinkutil.DecodeStrict("routes", n, &cfg.Routes))
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return cfg, cfg.Validate()
}

// content unwraps a document node; nil for an absent or null section.
func content(n *yaml.Node) *yaml.Node {
	if n == nil || n.Kind == 0 {
		return nil
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	return n
}

// commonKeys are the keys of SinkConfig itself; the rest are the type's.
var commonKeys = map[string]bool{"name": true, "type": true, "min_severity": true, "include": true,
	"exclude": true, "buffer": true, "on_full": true, "batch_size": true, "retry": true}

func decodeSink(field string, n *yaml.Node) (SinkConfig, error) {
	var sc SinkConfig
	if n.Kind != yaml.MappingNode {
		return sc, sinkutil.Fieldf(field, "must be a mapping with name and type (line %d)", n.Line)
	}
	common, typed := sinkutil.SplitMapping(n, commonKeys)
	if err := sinkutil.DecodeStrict(field, common, &sc); err != nil {
		return sc, err
	}
	typ, err := sinkTypeOf(field, sc.Type)
	if err != nil {
		return sc, err
	}
	sc.Settings = typ.settings()
	return sc, sinkutil.DecodeStrict(field, typed, sc.Settings)
}

// sinkTypeOf looks up the type of the sink at field.
func sinkTypeOf(field, name string) (sinkType, error) {
	if name == "" {
		return sinkType{}, &sinkutil.FieldError{Field: field + ".type", Err: sinkutil.ErrRequired}
	}
	typ, ok := lookupType(name)
	if !ok {
		return sinkType{}, sinkutil.Fieldf(field+".type", "unknown sink type %q (want %s)", name, typeNames())
	}
	return typ, nil
}

// FileSink is the config of a file sink (path "-" or "": stdout) that gets
// every alert, as replay -o uses.
func FileSink(name, path string) SinkConfig {
	typ := TypeFile
	if path == "" || path == "-" {
		typ = TypeStdout
	}
	return SinkConfig{Name: name, Type: typ, Settings: &file.Config{Path: path}}
}

// Validate checks the whole config; errors carry field paths.
func (c Config) Validate() error {
	var errs []error
	names := map[string]int{}
	for i, s := range c.Sinks {
		f := fmt.Sprintf("sinks[%d]", i)
		switch {
		case s.Name == "":
			errs = append(errs, &sinkutil.FieldError{Field: f + ".name", Err: sinkutil.ErrRequired})
		case !nameRE.MatchString(s.Name):
			errs = append(errs, sinkutil.Fieldf(f+".name", "%q may hold only letters, digits, '-' and '_'", s.Name))
		default:
			if j, dup := names[s.Name]; dup {
				errs = append(errs, sinkutil.Fieldf(f+".name", "%q is also the name of sinks[%d]", s.Name, j))
			}
			names[s.Name] = i
		}
		errs = append(errs, s.validate(f))
	}
	defaults := 0
	for i, r := range c.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		if r.Default {
			defaults++
			if len(r.Namespaces) > 0 {
				errs = append(errs, sinkutil.Fieldf(f+".namespaces", "the default route matches everything else; remove namespaces"))
			}
		} else if len(r.Namespaces) == 0 {
			errs = append(errs, &sinkutil.FieldError{Field: f + ".namespaces", Err: sinkutil.ErrRequired})
		}
		for j, g := range r.Namespaces {
			if _, err := path.Match(g, ""); err != nil {
				errs = append(errs, sinkutil.Fieldf(fmt.Sprintf("%s.namespaces[%d]", f, j), "bad glob %q", g))
			}
		}
		if len(r.Sinks) == 0 && !r.Default {
			errs = append(errs, &sinkutil.FieldError{Field: f + ".sinks", Err: sinkutil.ErrRequired})
		}
		for j, s := range r.Sinks {
			if _, ok := names[s]; !ok {
				errs = append(errs, sinkutil.Fieldf(fmt.Sprintf("%s.sinks[%d]", f, j), "no sink is named %q", s))
			}
		}
	}
	if len(c.Routes) > 0 && defaults != 1 {
		errs = append(errs, sinkutil.Fieldf("routes", "needs exactly one route with default: true, found %d", defaults))
	}
	return errors.Join(errs...)
}

func (s SinkConfig) validate(f string) error {
	var errs []error
	for _, m := range []struct {
		field string
		globs []string
	}{{"include.rules", s.Include.Rules}, {"include.tags", s.Include.Tags},
		{"exclude.rules", s.Exclude.Rules}, {"exclude.tags", s.Exclude.Tags}} {
		for j, g := range m.globs {
			if _, err := path.Match(g, ""); err != nil {
				errs = append(errs, sinkutil.Fieldf(fmt.Sprintf("%s.%s[%d]", f, m.field, j), "bad glob %q", g))
			}
		}
	}
	if s.Buffer < 0 {
		errs = append(errs, sinkutil.Fieldf(f+".buffer", "must not be negative"))
	}
	if s.BatchSize < 0 {
		errs = append(errs, sinkutil.Fieldf(f+".batch_size", "must not be negative"))
	}
	if s.OnFull != "" && s.OnFull != "drop" && s.OnFull != "block" {
		errs = append(errs, sinkutil.Fieldf(f+".on_full", "%q is not drop or block", s.OnFull))
	}
	if s.Retry.Initial < 0 || s.Retry.Max < 0 || s.Retry.MaxElapsed < 0 {
		errs = append(errs, sinkutil.Fieldf(f+".retry", "durations must not be negative"))
	}
	typ, err := sinkTypeOf(f, s.Type)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	settings, err := s.settings(typ)
	if err != nil {
		return errors.Join(append(errs, sinkutil.Prefix(f+".type", err))...)
	}
	errs = append(errs, sinkutil.Prefix(f, settings.Validate()))
	return errors.Join(errs...)
}

// settings returns the sink's settings, the type's zero settings when
// there are none, or an error when they belong to another type.
func (s SinkConfig) settings(typ sinkType) (Settings, error) {
	zero := typ.settings()
	if s.Settings == nil {
		return zero, nil
	}
	if reflect.TypeOf(s.Settings) != reflect.TypeOf(zero) {
		return nil, fmt.Errorf("%s sink %q has settings of type %T, want %T", typ.name, s.Name, s.Settings, zero)
	}
	if reflect.ValueOf(s.Settings).IsNil() {
		return zero, nil
	}
	return s.Settings, nil
}
