package detect

import (
	"fmt"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// Problem is one finding of Lint.
type Problem struct {
	File, Rule, Message string
}

func (p Problem) String() string { return fmt.Sprintf("%s: rule %s: %s", p.File, p.Rule, p.Message) }

// Lint checks what compiling does not: that each rule reads only what its
// declared audit level records (requestObject needs Request, responseObject
// RequestResponse), declares the resources it reads, ships fixtures that
// both fire it and keep it quiet, and that its exceptions do not open blind
// spots: an identity list exempting every service account of a namespace
// (or every system identity), or an exception that switches the rule off
// for a whole namespace.
func Lint(c *Catalog) []Problem {
	var out []Problem
	for _, s := range c.Rules {
		add := func(format string, a ...any) {
			out = append(out, Problem{File: s.File, Rule: s.ID, Message: fmt.Sprintf(format, a...)})
		}
		reads := map[string]bool{}
		for _, src := range ruleSources(s) {
			for id := range identifiers(src) {
				reads[id] = true
			}
		}
		if strings.Contains(s.Output, ".requestObject") {
			reads["requestObject"] = true
		}
		if strings.Contains(s.Output, ".responseObject") {
			reads["responseObject"] = true
		}
		if reads["requestObject"] && s.Audit.Level < LevelRequest {
			add("reads requestObject but audit.level is %s: the policy will not record request bodies (need Request)", s.Audit.Level)
		}
		if reads["responseObject"] && s.Audit.Level < LevelRequestResponse {
			add("reads responseObject but audit.level is %s: the policy will not record response bodies (need RequestResponse)", s.Audit.Level)
		}
		if len(s.Audit.Resources) == 0 && len(s.Audit.NonResourceURLs) == 0 {
			add("audit.resources is empty: the generated policy cannot know which events the rule needs")
		}
		if len(s.Fixtures.Fire) == 0 {
			add("no fire fixture: add events that must raise the rule")
		}
		if len(s.Fixtures.Quiet) == 0 {
			add("no quiet fixture: add near misses that must not raise the rule")
		}
		for i, e := range s.Exceptions {
			for _, m := range lintException(e, c.Lists) {
				add("exceptions[%d]: %s", i, m)
			}
		}
	}
	return out
}

// scalarFields are the event fields read without a member access.
var scalarFields = map[string]bool{"verb": true, "stage": true, "level": true, "requestURI": true, "sourceIPs": true,
	"userAgent": true, "requestObject": true, "responseObject": true, "annotations": true, "cluster": true, "auditID": true}

// identityFields are the event fields that name who made a request.
var identityFields = map[string]bool{"user.username": true, "impersonatedUser.username": true}

// lintException returns what is wrong with one exception: identity lists or
// prefixes so broad that they exempt identities an attacker can create or
// steal, and conditions that read nothing but the namespace.
func lintException(src string, lists map[string][]string) []string {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil
	}
	var out, broad []string
	fields := map[string]bool{}
	ast.Walk(&tree.Node, visitor(func(n ast.Node) {
		if p := fieldPath(n); (strings.Contains(p, ".") && !strings.HasPrefix(p, "lists.")) || scalarFields[p] {
			fields[p] = true
		}
		switch n := n.(type) {
		case *ast.CallNode:
			id, ok := n.Callee.(*ast.IdentifierNode)
			if !ok || len(n.Arguments) < 2 {
				return
			}
			field := fieldPath(n.Arguments[0])
			switch {
			case id.Value == "inList" && identityFields[field]:
				if name, ok := n.Arguments[1].(*ast.StringNode); ok {
					broad = append(broad, broadEntries(name.Value, lists[name.Value])...)
				}
			case id.Value == "hasAnyPrefix" && identityFields[field]:
				for _, a := range n.Arguments[1:] {
					if s, ok := a.(*ast.StringNode); ok && broadPrefix(s.Value) {
						broad = append(broad, fmt.Sprintf("prefix %q exempts %s: name the identities", s.Value, describeBroad(s.Value)))
					}
				}
			}
		case *ast.BinaryNode:
			field := fieldPath(n.Left)
			if !identityFields[field] {
				return
			}
			switch n.Operator {
			case "startsWith":
				if s, ok := n.Right.(*ast.StringNode); ok && broadPrefix(s.Value) {
					broad = append(broad, fmt.Sprintf("prefix %q exempts %s: name the identities", s.Value, describeBroad(s.Value)))
				}
			case "in":
				if m, ok := n.Right.(*ast.MemberNode); ok && fieldPath(m.Node) == "lists" {
					if name, ok := m.Property.(*ast.StringNode); ok {
						broad = append(broad, broadEntries(name.Value, lists[name.Value])...)
					}
				}
			}
		}
	}))
	// An exception that reads only who the caller is exempts identities
	// outright; one that also reads what they do narrows it to that.
	onlyIdentity := true
	for f := range fields {
		onlyIdentity = onlyIdentity && (identityFields[f] || f == "user.groups")
	}
	if onlyIdentity {
		out = append(out, broad...)
	}
	if len(fields) == 1 && fields["objectRef.namespace"] {
		out = append(out, "reads nothing but objectRef.namespace: it switches the rule off for whole namespaces, "+
			"whoever acts there; narrow it to the identities or objects that are expected")
	}
	return out
}

// broadEntries reports the glob entries of an identity list that cover
// every service account of a namespace, of the cluster, or every system
// identity.
func broadEntries(list string, items []string) []string {
	var out []string
	for _, it := range items {
		i := strings.IndexAny(it, "*?[")
		if i < 0 {
			continue
		}
		if broadPrefix(it[:i]) {
			out = append(out, fmt.Sprintf("list %s entry %q exempts %s: name the identities", list, it, describeBroad(it[:i])))
		}
	}
	return out
}

// broadPrefix reports whether a user-name prefix takes in identities that
// anyone able to create a service account (or none at all) can hold.
func broadPrefix(p string) bool {
	switch p {
	case "", "system:", "system:serviceaccount:", "system:serviceaccounts":
		return true
	}
	rest, ok := strings.CutPrefix(p, "system:serviceaccount:")
	if !ok {
		return false
	}
	ns, name, found := strings.Cut(rest, ":")
	return found && ns != "" && name == ""
}

func describeBroad(p string) string {
	if ns, ok := strings.CutPrefix(p, "system:serviceaccount:"); ok && ns != "" {
		return "every service account of namespace " + strings.TrimSuffix(ns, ":") + ", including any created there later"
	}
	if p == "" {
		return "every identity"
	}
	return "every identity named " + p + "..."
}

func ruleSources(s RuleSpec) []string {
	out := append([]string{s.Match}, s.Exceptions...)
	if w := s.Window; w != nil {
		out = append(out, w.By...)
		out = append(out, w.Distinct)
		for _, st := range w.Steps {
			out = append(out, st.Match)
			out = append(out, st.By...)
		}
	}
	return out
}

// identifiers returns the top-level names an expression reads.
func identifiers(src string) map[string]bool {
	out := map[string]bool{}
	if strings.TrimSpace(src) == "" {
		return out
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return out
	}
	ast.Walk(&tree.Node, visitor(func(n ast.Node) {
		if id, ok := n.(*ast.IdentifierNode); ok {
			out[id.Value] = true
		}
	}))
	return out
}
