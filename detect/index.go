package detect

import (
	"math"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"

	"github.com/vigil-k8s/vigil/ingest"
)

// ruleIndex picks the rules an event can match from the constant resource
// conditions of their match expressions, so a secrets rule never runs on a
// lease update.
type ruleIndex struct {
	// byResource holds, per resource, the rules constrained to it merged
	// with the unconstrained rules, in rule order.
	byResource map[string][]*Rule
	// anyResource are the rules without a resource condition.
	anyResource []*Rule
}

func buildIndex(rules []*Rule) ruleIndex {
	ix := ruleIndex{byResource: map[string][]*Rule{}}
	for _, r := range rules {
		if r.resources == nil {
			ix.anyResource = append(ix.anyResource, r)
		}
	}
	for _, r := range rules {
		for res := range r.resources {
			if _, ok := ix.byResource[res]; ok {
				continue
			}
			var list []*Rule
			for _, c := range rules {
				if _, ok := c.resources[res]; ok || c.resources == nil {
					list = append(list, c)
				}
			}
			ix.byResource[res] = list
		}
	}
	return ix
}

// candidates returns the rules that may match an event on resource, in
// rule order; the caller then applies each rule's checks.
func (ix *ruleIndex) candidates(resource string) []*Rule {
	if list, ok := ix.byResource[resource]; ok {
		return list
	}
	return ix.anyResource
}

// check is a constant condition found at the top level of a match
// expression (joined with &&), tested in Go before the expression runs:
// FIELD == "x", FIELD in ["x", "y"], FIELD != "", and comparisons of
// responseStatus.code with integers.
type check struct {
	// name is the field's expression path, str reads it.
	name     string
	str      func(*ingest.Event) string
	set      map[string]struct{}
	notEmpty bool
	// code checks: the code is in codes, or within [lo, hi].
	code   bool
	codes  map[int]struct{}
	lo, hi int
}

// stringFields are the fields checks can read without the VM.
var stringFields = map[string]func(*ingest.Event) string{
	"verb":                      func(e *ingest.Event) string { return e.Verb },
	"stage":                     func(e *ingest.Event) string { return e.Stage },
	"level":                     func(e *ingest.Event) string { return e.Level },
	"objectRef.resource":        func(e *ingest.Event) string { return e.ObjectRef.Resource },
	"objectRef.subresource":     func(e *ingest.Event) string { return e.ObjectRef.Subresource },
	"objectRef.namespace":       func(e *ingest.Event) string { return e.ObjectRef.Namespace },
	"objectRef.name":            func(e *ingest.Event) string { return e.ObjectRef.Name },
	"objectRef.apiGroup":        func(e *ingest.Event) string { return e.ObjectRef.APIGroup },
	"user.username":             func(e *ingest.Event) string { return e.User.Username },
	"impersonatedUser.username": func(e *ingest.Event) string { return e.ImpersonatedUser.Username },
}

func (c *check) ok(e *ingest.Event) bool {
	if c.code {
		code := e.ResponseStatus.Code
		if c.codes != nil {
			_, in := c.codes[code]
			return in
		}
		return code >= c.lo && code <= c.hi
	}
	v := c.str(e)
	if c.notEmpty {
		return v != ""
	}
	_, in := c.set[v]
	return in
}

// prefilter reports whether every constant condition of the rule holds.
func (r *Rule) prefilter(e *ingest.Event) bool {
	for i := range r.checks {
		if !r.checks[i].ok(e) {
			return false
		}
	}
	return true
}

// ruleConstraints returns the resources a rule can match (nil: any) and
// its checks. A sequence matches where any of its steps does: its resources
// and verbs are the union of its steps'; a rule-level match adds its own.
func ruleConstraints(r *Rule) (map[string]struct{}, []check) {
	if r.steps == nil {
		res, checks, _ := matchConstraints(r.Spec.Match)
		return res, checks
	}
	var resources, verbs map[string]struct{}
	for i, st := range r.Spec.Window.Steps {
		_, checks, _ := matchConstraints(st.Match)
		res, vb := setOf(checks, "objectRef.resource"), setOf(checks, "verb")
		if i == 0 {
			resources, verbs = res, vb
			continue
		}
		resources, verbs = union(resources, res), union(verbs, vb)
	}
	var checks []check
	if r.Spec.Match != "" {
		var res map[string]struct{}
		res, checks, _ = matchConstraints(r.Spec.Match)
		if res != nil {
			resources = res
		}
	}
	if resources != nil {
		checks = append(checks, check{name: "objectRef.resource", str: stringFields["objectRef.resource"], set: resources})
	}
	if verbs != nil {
		checks = append(checks, check{name: "verb", str: stringFields["verb"], set: verbs})
	}
	return resources, checks
}

// setOf returns the set of the first set check on a field, or nil.
func setOf(checks []check, field string) map[string]struct{} {
	for _, c := range checks {
		if c.set != nil && c.name == field {
			return c.set
		}
	}
	return nil
}

func union(a, b map[string]struct{}) map[string]struct{} {
	if a == nil || b == nil {
		return nil
	}
	out := make(map[string]struct{}, len(a)+len(b))
	for k := range a {
		out[k] = struct{}{}
	}
	for k := range b {
		out[k] = struct{}{}
	}
	return out
}

// matchConstraints parses a match expression and returns its constant
// resource set (nil: any) and checks, and whether the checks are the whole
// expression (then it need not run at all).
func matchConstraints(src string) (map[string]struct{}, []check, bool) {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, nil, false
	}
	var checks []check
	var resources map[string]struct{}
	complete := true
	var walk func(n ast.Node)
	walk = func(n ast.Node) {
		b, ok := n.(*ast.BinaryNode)
		if !ok {
			complete = false
			return
		}
		if b.Operator == "&&" || b.Operator == "and" {
			walk(b.Left)
			walk(b.Right)
			return
		}
		c, field, ok := constCheck(b)
		if !ok {
			complete = false
			return
		}
		checks = append(checks, c)
		if field == "objectRef.resource" && c.set != nil && resources == nil {
			resources = c.set
		}
	}
	walk(tree.Node)
	return resources, checks, complete
}

// constCheck recognizes one constant condition.
func constCheck(b *ast.BinaryNode) (check, string, bool) {
	left, right := b.Left, b.Right
	field := fieldPath(left)
	if field == "responseStatus.code" {
		return codeCheck(b.Operator, right)
	}
	get, ok := stringFields[field]
	if !ok {
		return check{}, "", false
	}
	switch b.Operator {
	case "==":
		if s, ok := right.(*ast.StringNode); ok {
			return check{str: get, set: map[string]struct{}{s.Value: {}}, name: field}, field, true
		}
	case "!=":
		if s, ok := right.(*ast.StringNode); ok && s.Value == "" {
			return check{str: get, notEmpty: true, name: field}, field, true
		}
	case "in":
		arr, ok := right.(*ast.ArrayNode)
		if !ok {
			break
		}
		set := map[string]struct{}{}
		for _, n := range arr.Nodes {
			s, ok := n.(*ast.StringNode)
			if !ok {
				return check{}, "", false
			}
			set[s.Value] = struct{}{}
		}
		return check{str: get, set: set, name: field}, field, true
	}
	return check{}, "", false
}

func codeCheck(op string, right ast.Node) (check, string, bool) {
	const field = "responseStatus.code"
	c := check{code: true, name: field}
	if arr, ok := right.(*ast.ArrayNode); ok && op == "in" {
		c.codes = map[int]struct{}{}
		for _, n := range arr.Nodes {
			i, ok := n.(*ast.IntegerNode)
			if !ok {
				return check{}, "", false
			}
			c.codes[i.Value] = struct{}{}
		}
		return c, field, true
	}
	i, ok := right.(*ast.IntegerNode)
	if !ok {
		return check{}, "", false
	}
	switch op {
	case "==":
		c.codes = map[int]struct{}{i.Value: {}}
	case "<":
		c.lo, c.hi = math.MinInt, i.Value-1
	case "<=":
		c.lo, c.hi = math.MinInt, i.Value
	case ">":
		c.lo, c.hi = i.Value+1, math.MaxInt
	case ">=":
		c.lo, c.hi = i.Value, math.MaxInt
	default:
		return check{}, "", false
	}
	return c, field, true
}
