package detect

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// RuleFile is one YAML rule file: rules and the named lists they use.
type RuleFile struct {
	Rules []RuleSpec          `yaml:"rules"`
	Lists map[string][]string `yaml:"lists"`
}

// RuleSpec is a rule as written in YAML: plain data, validated and turned
// into a Rule by Compile. docs/rules.md is the reference.
type RuleSpec struct {
	ID          string   `yaml:"id"`
	Title       string   `yaml:"title"`
	Description string   `yaml:"description"`
	Severity    Severity `yaml:"severity"`
	// Tags are free-form; MITRE ATT&CK ids (T1609, attack.execution) by
	// convention.
	Tags []string `yaml:"tags"`
	// Audit is what the apiserver's audit policy must record for the rule
	// to see its events.
	Audit AuditNeeds `yaml:"audit"`
	// Match is a boolean expression over the event. Required, except for
	// sequence rules where each step has its own.
	Match string `yaml:"match"`
	// Exceptions are boolean expressions; an event for which any is true
	// does not match.
	Exceptions []string `yaml:"exceptions"`
	// Output is a text/template for the alert message.
	Output string `yaml:"output"`
	// Window makes the rule stateful; nil means every match alerts.
	Window *WindowSpec `yaml:"window"`
	// Suppress collapses alert storms of a single-event rule (on by
	// default; suppress.go).
	Suppress *SuppressSpec `yaml:"suppress"`
	// Enabled defaults to true.
	Enabled *bool `yaml:"enabled"`
	// Fixtures are events that must and must not fire the rule.
	Fixtures Fixtures `yaml:"fixtures"`

	// File is the file the rule was loaded from (for error messages).
	File string `yaml:"-"`
}

// IsEnabled reports whether the rule is enabled (the default).
func (s *RuleSpec) IsEnabled() bool { return s.Enabled == nil || *s.Enabled }

// AuditNeeds states the audit policy a rule depends on, in the terms of an
// audit.k8s.io/v1 PolicyRule.
type AuditNeeds struct {
	// Level is the least audit level the rule needs: Metadata, Request or
	// RequestResponse.
	Level Level `yaml:"level"`
	// Resources the rule reads; empty means the rule reads only
	// non-resource requests (or every request when NonResourceURLs is also
	// empty).
	Resources []GroupResources `yaml:"resources"`
	// Verbs the rule reads; empty means all.
	Verbs []string `yaml:"verbs"`
	// NonResourceURLs the rule reads, such as /healthz* (as in a PolicyRule).
	NonResourceURLs []string `yaml:"nonResourceURLs"`
}

// GroupResources names resources of one API group, as in an audit policy:
// "pods" does not include "pods/exec"; "pods/*" is every subresource of pods.
type GroupResources struct {
	Group     string   `yaml:"group"`
	Resources []string `yaml:"resources"`
}

// WindowSpec makes a rule count matches over event time before it alerts.
type WindowSpec struct {
	// Kind is threshold, distinct, sequence or first_seen.
	Kind WindowKind `yaml:"kind"`
	// By are expressions whose values form the group key (threshold,
	// distinct and first_seen). Each key has its own window; for first_seen
	// its own baseline.
	By []string `yaml:"by"`
	// Within is the window length.
	Within Duration `yaml:"within"`
	// Count is the number of matches (threshold) or distinct values
	// (distinct) that fire the rule.
	Count int `yaml:"count"`
	// Distinct is the expression whose distinct values are counted (kind
	// distinct), e.g. objectRef.namespace + "/" + objectRef.name.
	Distinct string `yaml:"distinct"`
	// Steps are the ordered steps of a sequence.
	Steps []StepSpec `yaml:"steps"`
	// Cooldown suppresses the rule for the same key after it fired.
	Cooldown Duration `yaml:"cooldown"`

	// The fields below are those of first_seen (window_firstseen.go).
	FirstSeenSpec `yaml:",inline"`
}

// StepSpec is one step of a sequence window.
type StepSpec struct {
	Name  string `yaml:"name"`
	Match string `yaml:"match"`
	// By are key expressions; each may yield a string or a list of strings
	// (several keys from one event, e.g. the subjects of a binding). A later
	// step continues the sequence when one of its keys equals one of an
	// earlier step's keys.
	By []string `yaml:"by"`
}

// WindowKind names a window semantics.
type WindowKind string

// Window kinds.
const (
	WindowThreshold WindowKind = "threshold"
	WindowDistinct  WindowKind = "distinct"
	WindowSequence  WindowKind = "sequence"
	WindowFirstSeen WindowKind = "first_seen"
)

// Fixtures are the test cases shipped with a rule.
type Fixtures struct {
	// Fire cases must raise the rule at least once (or exactly Alerts times).
	Fire []Fixture `yaml:"fire"`
	// Quiet cases must not raise the rule.
	Quiet []Fixture `yaml:"quiet"`
}

// Fixture is a named, ordered list of events. Events may be partial: a
// missing auditID, stage or requestReceivedTimestamp is filled in (unique
// id, ResponseComplete, one second apart from 2026-01-01T00:00:00Z).
type Fixture struct {
	Name   string           `yaml:"name"`
	Events []map[string]any `yaml:"events"`
	// Alerts, when set, is the exact number of alerts a fire case raises.
	Alerts int `yaml:"alerts"`
}

// Severity orders alerts: info < low < medium < high < critical.
type Severity int

// Severities.
const (
	SeverityUnknown Severity = iota
	SeverityInfo
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = []string{"", "info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if s < 0 || int(s) >= len(severityNames) {
		return fmt.Sprintf("Severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity parses info, low, medium, high or critical.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if i > 0 && strings.EqualFold(s, n) {
			return Severity(i), nil
		}
	}
	return SeverityUnknown, fmt.Errorf("unknown severity %q (want info, low, medium, high or critical)", s)
}

// UnmarshalYAML reads a severity name.
func (s *Severity) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSeverity(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = v
	return nil
}

// MarshalYAML writes the severity name.
func (s Severity) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText writes the severity name (JSON).
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity name (JSON, flags).
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// Level is an audit level, ordered None < Metadata < Request < RequestResponse.
type Level int

// Audit levels.
const (
	LevelNone Level = iota
	LevelMetadata
	LevelRequest
	LevelRequestResponse
)

var levelNames = []string{"None", "Metadata", "Request", "RequestResponse"}

func (l Level) String() string {
	if l < 0 || int(l) >= len(levelNames) {
		return fmt.Sprintf("Level(%d)", int(l))
	}
	return levelNames[l]
}

// ParseLevel parses an audit level name as the audit API spells it.
func ParseLevel(s string) (Level, error) {
	for i, n := range levelNames {
		if s == n {
			return Level(i), nil
		}
	}
	return LevelNone, fmt.Errorf("unknown audit level %q (want None, Metadata, Request or RequestResponse)", s)
}

// UnmarshalYAML reads a level name.
func (l *Level) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseLevel(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*l = v
	return nil
}

// MarshalYAML writes the level name.
func (l Level) MarshalYAML() (any, error) { return l.String(), nil }

// Duration is a time.Duration written as "90s", "5m" or "1h", or a whole
// number of days: "7d".
type Duration time.Duration

// UnmarshalYAML reads a Go duration string or a number of days.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if days, ok := strings.CutSuffix(n.Value, "d"); ok && err != nil {
		if k, aerr := strconv.Atoi(days); aerr == nil && k >= 0 {
			v, err = time.Duration(k)*24*time.Hour, nil
		}
	}
	if err != nil {
		return fmt.Errorf("line %d: bad duration %q (want e.g. 30s, 5m, 1h, 7d)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
