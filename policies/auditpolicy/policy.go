package auditpolicy

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/apis/audit/validation"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/vigil-k8s/vigil/detect"
)

// Policy is an audit policy ready to be evaluated the way kube-apiserver
// evaluates it. It is immutable and safe for concurrent use.
type Policy struct {
	// rules are the policy's rules in order, as the apiserver holds them
	// (internal types). They are copies: the evaluator mutates its own.
	rules []auditinternal.PolicyRule
	// omitStages are the policy-wide omitted stages.
	omitStages []auditinternal.Stage
	// eval is the apiserver's evaluator over the whole policy: the level it
	// returns is the level the apiserver records.
	eval audit.PolicyRuleEvaluator
	// probes[i] evaluates rule i alone with its level forced to Metadata,
	// so a match says which rule decided (the evaluator reports only the
	// level).
	probes []audit.PolicyRuleEvaluator
}

// Decision is what a policy does with one request.
type Decision struct {
	// Level is the level the request is recorded at.
	Level detect.Level
	// Rule is the index of the first matching policy rule, -1 when none
	// matched (the apiserver then records nothing).
	Rule int
	// OmitStages are the stages recorded at no level.
	OmitStages []string
}

// Records reports whether an event of the given stage is written at all.
func (d Decision) Records(stage string) bool {
	return d.Level > detect.LevelNone && !slices.Contains(d.OmitStages, stage)
}

// where names the deciding rule for messages.
func (d Decision) where() string {
	if d.Rule < 0 {
		return "no rule matches (default None)"
	}
	return fmt.Sprintf("rules[%d]", d.Rule)
}

// strictDecoder decodes policies into the apiserver's internal types and
// fails on unknown or duplicate fields. kube-apiserver itself falls back to
// a lenient decoder with only a warning, so a mistyped field such as
// `resource:` silently widens a rule to every resource; here it is an error.
var strictDecoder = serializer.NewCodecFactory(audit.Scheme, serializer.EnableStrict).UniversalDecoder()

// Load decodes an audit.k8s.io/v1 Policy (YAML or JSON) strictly and
// validates it as kube-apiserver does. Errors name the field and, for
// YAML, the line.
func Load(data []byte) (*Policy, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("decode audit policy: the file is empty")
	}
	var head struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
	}
	if err := yaml.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("decode audit policy: %w", err)
	}
	if head.APIVersion != auditv1.SchemeGroupVersion.String() || head.Kind != "Policy" {
		return nil, fmt.Errorf("decode audit policy: got apiVersion %q, kind %q; want apiVersion: %s, kind: Policy",
			head.APIVersion, head.Kind, auditv1.SchemeGroupVersion)
	}
	var internal auditinternal.Policy
	_, gvk, err := strictDecoder.Decode(data, nil, &internal)
	if err != nil {
		return nil, fmt.Errorf("decode audit policy: %s", withLines(data, err))
	}
	gv := schema.GroupVersion{Group: gvk.Group, Version: gvk.Version}
	if gv != auditv1.SchemeGroupVersion {
		return nil, fmt.Errorf("decode audit policy: apiVersion %q is not supported (want apiVersion: %s, kind: Policy)",
			gv.String(), auditv1.SchemeGroupVersion)
	}
	return fromInternal(&internal)
}

// FromV1 prepares a v1 policy for evaluation, converting and validating it
// as kube-apiserver does.
func FromV1(p *auditv1.Policy) (*Policy, error) {
	var internal auditinternal.Policy
	if err := audit.Scheme.Convert(p.DeepCopy(), &internal, nil); err != nil {
		return nil, fmt.Errorf("convert audit policy: %w", err)
	}
	return fromInternal(&internal)
}

func fromInternal(p *auditinternal.Policy) (*Policy, error) {
	if errs := validation.ValidatePolicy(p); len(errs) > 0 {
		return nil, fmt.Errorf("invalid audit policy: %w", errs.ToAggregate())
	}
	// The apiserver refuses to start with such a policy.
	if len(p.Rules) == 0 {
		return nil, errors.New("invalid audit policy: it has no rules, which kube-apiserver refuses to load " +
			"(a policy that records nothing is `rules: [{level: None}]`)")
	}
	out := &Policy{omitStages: slices.Clone(p.OmitStages)}
	for _, r := range p.Rules {
		out.rules = append(out.rules, *r.DeepCopy())
	}
	out.eval = policy.NewPolicyRuleEvaluator(p.DeepCopy())
	for _, r := range p.Rules {
		probe := r.DeepCopy()
		probe.Level = auditinternal.LevelMetadata
		out.probes = append(out.probes, policy.NewPolicyRuleEvaluator(&auditinternal.Policy{Rules: []auditinternal.PolicyRule{*probe}}))
	}
	return out, nil
}

// Evaluate returns what the policy does with a request.
func (p *Policy) Evaluate(attrs authorizer.Attributes) Decision {
	cfg := p.eval.EvaluatePolicyRule(attrs)
	lvl, err := detect.ParseLevel(string(cfg.Level))
	if err != nil {
		panic("BUG: the apiserver's evaluator returned an unknown level: " + err.Error())
	}
	d := Decision{Level: lvl, Rule: -1}
	for i, pr := range p.probes {
		if pr.EvaluatePolicyRule(attrs).Level != auditinternal.LevelNone {
			d.Rule = i
			break
		}
	}
	if d.Rule >= 0 && string(p.rules[d.Rule].Level) != string(cfg.Level) {
		panic(fmt.Sprintf("BUG: rules[%d] matched with level %s but the evaluator gave %s", d.Rule, p.rules[d.Rule].Level, cfg.Level))
	}
	for _, s := range cfg.OmitStages {
		d.OmitStages = append(d.OmitStages, string(s))
	}
	slices.Sort(d.OmitStages)
	return d
}

// pathSegment is one step of a field path in a strict decoding error, such
// as rules[0].resources[1].resourcenames.
var (
	unknownField = regexp.MustCompile(`unknown field "([^"]+)"`)
	pathSegment  = regexp.MustCompile(`([^.\[\]]+)|\[(\d+)\]`)
)

// withLines adds the YAML line of each unknown field the decoder names, so
// the user finds the typo at once.
func withLines(data []byte, err error) string {
	msg := err.Error()
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return msg
	}
	return unknownField.ReplaceAllStringFunc(msg, func(m string) string {
		path := unknownField.FindStringSubmatch(m)[1]
		if line := lineOf(root.Content[0], path); line > 0 {
			return fmt.Sprintf("%s (line %d)", m, line)
		}
		return m
	})
}

// lineOf finds the line of the key at a decoder field path.
func lineOf(n *yaml.Node, path string) int {
	line := 0
	for _, seg := range pathSegment.FindAllStringSubmatch(path, -1) {
		switch {
		case seg[2] != "" && n.Kind == yaml.SequenceNode:
			i, _ := strconv.Atoi(seg[2])
			if i >= len(n.Content) {
				return 0
			}
			n = n.Content[i]
			line = n.Line
		case seg[1] != "" && n.Kind == yaml.MappingNode:
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == seg[1] {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return 0
			}
		default:
			return 0
		}
	}
	return line
}

// levelOf converts an audit API level.
func levelOf(l auditinternal.Level) detect.Level {
	v, err := detect.ParseLevel(string(l))
	if err != nil {
		return detect.LevelNone
	}
	return v
}

// describeRule summarizes a policy rule's selectors for messages.
func describeRule(r auditinternal.PolicyRule) string {
	var parts []string
	if len(r.Users) > 0 {
		parts = append(parts, "users "+strings.Join(r.Users, ","))
	}
	if len(r.UserGroups) > 0 {
		parts = append(parts, "groups "+strings.Join(r.UserGroups, ","))
	}
	if len(r.Verbs) > 0 {
		parts = append(parts, "verbs "+strings.Join(r.Verbs, ","))
	}
	if len(r.Namespaces) > 0 {
		parts = append(parts, "namespaces "+strings.Join(r.Namespaces, ","))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}
