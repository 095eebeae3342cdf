package auditpolicy

import (
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// Marshal writes the policy as YAML, each rule under the comment that says
// why it is there. The output is deterministic.
func (g *Generated) Marshal() ([]byte, error) {
	root := mapping()
	addScalar(root, "apiVersion", g.Policy.APIVersion)
	addScalar(root, "kind", g.Policy.Kind)
	stages := flowSeq()
	for _, s := range g.Policy.OmitStages {
		stages.Content = append(stages.Content, str(string(s)))
	}
	addNode(root, "omitStages", stages).HeadComment = comment(
		[]string{"RequestReceived only repeats what the later stages record."})
	rules := &yaml.Node{Kind: yaml.SequenceNode}
	for i, r := range g.Policy.Rules {
		n := ruleNode(r)
		n.HeadComment = comment(append([]string{fmt.Sprintf("rules[%d]", i)}, g.comments[i]...))
		rules.Content = append(rules.Content, n)
	}
	addNode(root, "rules", rules)
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}, HeadComment: comment(g.header)}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode audit policy: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode audit policy: %w", err)
	}
	return buf.Bytes(), nil
}

func ruleNode(r auditv1.PolicyRule) *yaml.Node {
	n := mapping()
	addScalar(n, "level", string(r.Level))
	addList(n, "users", r.Users)
	addList(n, "userGroups", r.UserGroups)
	addList(n, "verbs", r.Verbs)
	addList(n, "namespaces", r.Namespaces)
	if len(r.Resources) > 0 {
		res := &yaml.Node{Kind: yaml.SequenceNode}
		for _, gr := range r.Resources {
			m := mapping()
			// The core group is the empty string; write it so readers see it.
			addNode(m, "group", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: gr.Group, Style: yaml.DoubleQuotedStyle})
			addList(m, "resources", gr.Resources)
			res.Content = append(res.Content, m)
		}
		addNode(n, "resources", res)
	}
	addList(n, "nonResourceURLs", r.NonResourceURLs)
	return n
}

func mapping() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func flowSeq() *yaml.Node { return &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle} }

func str(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	// Quote what YAML would otherwise read as something else, such as "*"
	// (an alias) or an empty string.
	if s == "" || strings.ContainsAny(s[:1], "*&!|>'\"%@`{}[],#?:-") {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func addNode(m *yaml.Node, key string, v *yaml.Node) *yaml.Node {
	k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}
	m.Content = append(m.Content, k, v)
	return k
}

func addScalar(m *yaml.Node, key, value string) { addNode(m, key, str(value)) }

func addList(m *yaml.Node, key string, items []string) {
	if len(items) == 0 {
		return
	}
	s := flowSeq()
	for _, it := range items {
		s.Content = append(s.Content, str(it))
	}
	addNode(m, key, s)
}

func comment(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.TrimRight("# "+l, " ")
	}
	return strings.Join(out, "\n")
}
