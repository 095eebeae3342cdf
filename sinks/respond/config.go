package respond

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// Defaults of the responses: section.
const (
	DefaultMaxPerMinute   = 20
	DefaultRateLimitMax   = 10
	DefaultRateLimitPer   = time.Minute
	DefaultSelfNamespace  = "vigil"
	DefaultServiceAccount = "vigil"
)

// Config is the responses: section of the config file.
type Config struct {
	// Journal is the JSONL file of records (vigil serve defaults it to
	// DATA-DIR/responses.jsonl).
	Journal string `yaml:"journal"`
	// Kubeconfig is the cluster to act on; empty means in-cluster, else
	// $KUBECONFIG or ~/.kube/config.
	Kubeconfig string `yaml:"kubeconfig"`
	// MaxPerMinute caps all actions together (default 20).
	MaxPerMinute int     `yaml:"max_actions_per_minute"`
	Protect      Protect `yaml:"protect"`
	Rules        []Rule  `yaml:"rules"`
}

// Protect lists what no action touches, beside the built-in
// control-plane identities.
type Protect struct {
	// Namespaces are globs added to kube-public and kube-node-lease.
	Namespaces []string `yaml:"namespaces"`
	// AllowKubeSystem lets actions touch kube-system (off by default).
	AllowKubeSystem bool `yaml:"allow_kube_system"`
	// Identities are globs of user, group and service account names
	// (system:serviceaccount:NS:NAME) added to the control-plane ones.
	Identities []string `yaml:"identities"`
	// Self is vigil's own namespace and service account.
	Self Self `yaml:"self"`
}

// Self names vigil's own namespace and service account.
type Self struct {
	Namespace      string `yaml:"namespace"`
	ServiceAccount string `yaml:"service_account"`
}

// Rule maps matching alerts to actions.
type Rule struct {
	// Name identifies the rule in records (letters, digits, '-', '_').
	Name    string   `yaml:"name"`
	Match   Match    `yaml:"match"`
	Actions []Action `yaml:"actions"`
}

// Match selects alerts; every list that is not empty must match.
type Match struct {
	// Rules and Tags are globs over the alert's rule id and tags.
	Rules []string `yaml:"rules"`
	Tags  []string `yaml:"tags"`
	// Namespaces are globs over objectRef.namespace ("*" also matches
	// cluster-scoped objects).
	Namespaces  []string        `yaml:"namespaces"`
	MinSeverity detect.Severity `yaml:"min_severity"`
}

// Action is one action of a rule: the keys below, plus the type's own
// (Params).
type Action struct {
	Type string `yaml:"type"`
	// Enforce carries the action out; without it the action is only
	// recorded as planned (dry-run).
	Enforce   bool      `yaml:"enforce"`
	RateLimit RateLimit `yaml:"rate_limit"`
	// Params are the type's own keys: a pointer to its params struct.
	Params Params `yaml:"-"`
}

// RateLimit allows at most Max actions per Per (default 10 per minute).
type RateLimit struct {
	Max int             `yaml:"max"`
	Per detect.Duration `yaml:"per"`
}

// Params are the keys of an action that belong to its type.
type Params interface {
	// Validate checks the params; field paths are relative to the action.
	Validate() error
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// actionKeys are the keys of Action itself; the rest are the type's.
var actionKeys = map[string]bool{"type": true, "enforce": true, "rate_limit": true}

// DecodeConfig decodes the responses: section (nil or empty: no
// responses). Unknown fields are errors; all errors come joined, each with
// its field path (responses.rules[0].actions[1].mode: ...).
func DecodeConfig(n *yaml.Node) (Config, error) {
	var cfg Config
	n = content(n)
	if n == nil {
		return cfg, nil
	}
	if n.Kind != yaml.MappingNode {
		return cfg, sinkutil.Fieldf("responses", "must be a mapping (line %d)", n.Line)
	}
	// rules are decoded by hand: each action's keys split between Action
	// and its type's params.
	top := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	var rules *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "rules" {
			rules = n.Content[i+1]
			continue
		}
		top.Content = append(top.Content, n.Content[i], n.Content[i+1])
	}
	var errs []error
	errs = append(errs, sinkutil.DecodeStrict("responses", top, &cfg))
	if rules = content(rules); rules != nil {
		if rules.Kind != yaml.SequenceNode {
			errs = append(errs, sinkutil.Fieldf("responses.rules", "must be a list (line %d)", rules.Line))
		} else {
			for i, rn := range rules.Content {
				r, err := decodeRule(fmt.Sprintf("responses.rules[%d]", i), rn)
				errs = append(errs, err)
				cfg.Rules = append(cfg.Rules, r)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return cfg, cfg.Validate()
}

func decodeRule(field string, n *yaml.Node) (Rule, error) {
	var r Rule
	if n.Kind != yaml.MappingNode {
		return r, sinkutil.Fieldf(field, "must be a mapping with name, match and actions (line %d)", n.Line)
	}
	head := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	var actions *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "actions" {
			actions = n.Content[i+1]
			continue
		}
		head.Content = append(head.Content, n.Content[i], n.Content[i+1])
	}
	errs := []error{sinkutil.DecodeStrict(field, head, &r)}
	if actions = content(actions); actions != nil {
		if actions.Kind != yaml.SequenceNode {
			errs = append(errs, sinkutil.Fieldf(field+".actions", "must be a list (line %d)", actions.Line))
		} else {
			for i, an := range actions.Content {
				a, err := decodeAction(fmt.Sprintf("%s.actions[%d]", field, i), an)
				errs = append(errs, err)
				r.Actions = append(r.Actions, a)
			}
		}
	}
	return r, errors.Join(errs...)
}

func decodeAction(field string, n *yaml.Node) (Action, error) {
	var a Action
	if n.Kind != yaml.MappingNode {
		return a, sinkutil.Fieldf(field, "must be a mapping with a type (line %d)", n.Line)
	}
	common, typed := sinkutil.SplitMapping(n, actionKeys)
	if err := sinkutil.DecodeStrict(field, common, &a); err != nil {
		return a, err
	}
	typ, err := actionTypeOf(field, a.Type)
	if err != nil {
		return a, err
	}
	a.Params = typ.params()
	return a, sinkutil.DecodeStrict(field, typed, a.Params)
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

// actionTypeOf looks up the type of the action at field.
func actionTypeOf(field, name string) (actionType, error) {
	if name == "" {
		return actionType{}, &sinkutil.FieldError{Field: field + ".type", Err: sinkutil.ErrRequired}
	}
	typ, ok := lookupAction(name)
	if !ok {
		return actionType{}, sinkutil.Fieldf(field+".type", "unknown action %q (want %s)", name, actionNames())
	}
	return typ, nil
}

// Validate checks the whole section; errors carry field paths. It fills
// nothing in: defaults are applied where the values are used.
func (c Config) Validate() error {
	var errs []error
	if c.MaxPerMinute < 0 {
		errs = append(errs, sinkutil.Fieldf("responses.max_actions_per_minute", "must not be negative"))
	}
	for i, g := range c.Protect.Namespaces {
		errs = append(errs, checkGlob(fmt.Sprintf("responses.protect.namespaces[%d]", i), g))
	}
	for i, g := range c.Protect.Identities {
		errs = append(errs, checkGlob(fmt.Sprintf("responses.protect.identities[%d]", i), g))
	}
	names := map[string]int{}
	for i, r := range c.Rules {
		f := fmt.Sprintf("responses.rules[%d]", i)
		switch {
		case r.Name == "":
			errs = append(errs, &sinkutil.FieldError{Field: f + ".name", Err: sinkutil.ErrRequired})
		case !nameRE.MatchString(r.Name):
			errs = append(errs, sinkutil.Fieldf(f+".name", "%q may hold only letters, digits, '-' and '_'", r.Name))
		default:
			if j, dup := names[r.Name]; dup {
				errs = append(errs, sinkutil.Fieldf(f+".name", "%q is also the name of responses.rules[%d]", r.Name, j))
			}
			names[r.Name] = i
		}
		errs = append(errs, r.Match.validate(f+".match"))
		if len(r.Actions) == 0 {
			errs = append(errs, &sinkutil.FieldError{Field: f + ".actions", Err: sinkutil.ErrRequired})
		}
		for j, a := range r.Actions {
			errs = append(errs, a.validate(fmt.Sprintf("%s.actions[%d]", f, j)))
		}
	}
	return errors.Join(errs...)
}

func (m Match) validate(f string) error {
	var errs []error
	for _, l := range []struct {
		field string
		globs []string
	}{{"rules", m.Rules}, {"tags", m.Tags}, {"namespaces", m.Namespaces}} {
		for j, g := range l.globs {
			errs = append(errs, checkGlob(fmt.Sprintf("%s.%s[%d]", f, l.field, j), g))
		}
	}
	if len(m.Rules) == 0 && len(m.Tags) == 0 && m.MinSeverity == detect.SeverityUnknown {
		errs = append(errs, sinkutil.Fieldf(f, "needs rules, tags or min_severity: a rule matching every alert is a mistake"))
	}
	return errors.Join(errs...)
}

func (a Action) validate(f string) error {
	var errs []error
	if a.RateLimit.Max < 0 {
		errs = append(errs, sinkutil.Fieldf(f+".rate_limit.max", "must not be negative"))
	}
	if a.RateLimit.Per < 0 {
		errs = append(errs, sinkutil.Fieldf(f+".rate_limit.per", "must not be negative"))
	}
	typ, err := actionTypeOf(f, a.Type)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	p := a.Params
	if p == nil {
		p = typ.params()
	}
	return errors.Join(append(errs, sinkutil.Prefix(f, p.Validate()))...)
}

func checkGlob(field, g string) error {
	if _, err := path.Match(g, ""); err != nil {
		return sinkutil.Fieldf(field, "bad glob %q", g)
	}
	return nil
}

// params returns the action's params, the type's defaults when none were
// given.
func (a Action) params() Params {
	if a.Params != nil {
		return a.Params
	}
	typ, _ := lookupAction(a.Type)
	return typ.params()
}

// limit returns the rate limit with its defaults.
func (a Action) limit() (int, time.Duration) {
	n, per := a.RateLimit.Max, a.RateLimit.Per.D()
	if n == 0 {
		n = DefaultRateLimitMax
	}
	if per == 0 {
		per = DefaultRateLimitPer
	}
	return n, per
}

// Enabled lists the action types the rules use, in registry order.
func (c Config) Enabled() []string {
	used := map[string]bool{}
	for _, r := range c.Rules {
		for _, a := range r.Actions {
			used[a.Type] = true
		}
	}
	var out []string
	for _, t := range registry {
		if used[t.name] {
			out = append(out, t.name)
		}
	}
	return out
}

// CheckRuleIDs reports match.rules entries that match none of ids (the
// enabled rules): a misspelt id would leave its responses silent.
func (c Config) CheckRuleIDs(ids []string) error {
	var errs []error
	for i, r := range c.Rules {
		for j, g := range r.Match.Rules {
			if !slices.ContainsFunc(ids, func(id string) bool { return anyGlob([]string{g}, id) }) {
				errs = append(errs, sinkutil.Fieldf(fmt.Sprintf("responses.rules[%d].match.rules[%d]", i, j), "%q matches no enabled rule", g))
			}
		}
	}
	return errors.Join(errs...)
}
