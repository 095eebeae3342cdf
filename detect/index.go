package detect

import (
	"math"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"

	"github.com/vigil-k8s/vigil/ingest"
)

// ruleIndex picks the rules an event can match from the constant resource
// and verb conditions of their match expressions, so a secrets rule never
// runs on a lease update and a write rule never on a read.
type ruleIndex struct {
	// byResource holds, per resource, the rules constrained to it merged
	// with the unconstrained rules, in rule order, by verb.
	byResource map[string]*verbIndex
	// anyResource are the rules without a resource condition.
	anyResource *verbIndex
}

// verbIndex splits rules by the verb conditions they have: byVerb holds
// for each verb a rule names the rules that accept it, in rule order;
// other the rules without a verb condition, for every other verb.
type verbIndex struct {
	byVerb map[string][]*Rule
	other  []*Rule
}

func newVerbIndex(rules []*Rule) *verbIndex {
	vi := &verbIndex{byVerb: map[string][]*Rule{}}
	for _, r := range rules {
		verbs := setOf(r.checks, "verb")
		if verbs == nil {
			vi.other = append(vi.other, r)
		}
		for v := range verbs {
			vi.byVerb[v] = nil
		}
	}
	for v := range vi.byVerb {
		var list []*Rule
		for _, r := range rules {
			if verbs := setOf(r.checks, "verb"); verbs == nil || inSet(verbs, v) {
				list = append(list, r)
			}
		}
		vi.byVerb[v] = list
	}
	return vi
}

func inSet(set map[string]struct{}, v string) bool { _, ok := set[v]; return ok }

func buildIndex(rules []*Rule) ruleIndex {
	ix := ruleIndex{byResource: map[string]*verbIndex{}}
	var anyResource []*Rule
	for _, r := range rules {
		if r.resources == nil {
			anyResource = append(anyResource, r)
		}
	}
	ix.anyResource = newVerbIndex(anyResource)
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
			ix.byResource[res] = newVerbIndex(list)
		}
	}
	return ix
}

// candidates returns the rules that may match an event on resource with
// verb, in rule order; the caller then applies each rule's checks.
func (ix *ruleIndex) candidates(resource, verb string) []*Rule {
	vi, ok := ix.byResource[resource]
	if !ok {
		vi = ix.anyResource
	}
	if list, ok := vi.byVerb[verb]; ok {
		return list
	}
	return vi.other
}

// check is a constant condition found at the top level of a match
// expression (joined with &&), tested in Go before the expression runs:
// FIELD == "x", FIELD != "x", FIELD in ["x", "y"] and not in, startsWith,
// endsWith, inList(FIELD, "NAME") and their negations, and comparisons of
// responseStatus.code with integers.
type check struct {
	// name is the field's expression path, str reads it.
	name string
	str  func(*ingest.Event) string
	// The value is in set (few holds a small set), starts with prefix,
	// ends with suffix, is in the named list, or is not empty; negate
	// turns the test around.
	set            map[string]struct{}
	few            []string
	prefix, suffix string
	list           string
	lists          *compiledLists
	notEmpty       bool
	negate         bool
	// code checks: the code is in codes, or within [lo, hi].
	code   bool
	codes  map[int]struct{}
	lo, hi int
}

// stringFields are the string fields of the event that checks and
// compiled conditions read without the VM, by expression path;
// stringsFields the lists of strings, boolFields the booleans.
var stringFields = map[string]func(*ingest.Event) string{
	"level":                     func(e *ingest.Event) string { return e.Level },
	"auditID":                   func(e *ingest.Event) string { return e.AuditID },
	"stage":                     func(e *ingest.Event) string { return e.Stage },
	"requestURI":                func(e *ingest.Event) string { return e.RequestURI },
	"verb":                      func(e *ingest.Event) string { return e.Verb },
	"userAgent":                 func(e *ingest.Event) string { return e.UserAgent },
	"cluster":                   func(e *ingest.Event) string { return e.Cluster },
	"user.username":             func(e *ingest.Event) string { return e.User.Username },
	"user.uid":                  func(e *ingest.Event) string { return e.User.UID },
	"impersonatedUser.username": func(e *ingest.Event) string { return e.ImpersonatedUser.Username },
	"impersonatedUser.uid":      func(e *ingest.Event) string { return e.ImpersonatedUser.UID },
	"objectRef.resource":        func(e *ingest.Event) string { return e.ObjectRef.Resource },
	"objectRef.subresource":     func(e *ingest.Event) string { return e.ObjectRef.Subresource },
	"objectRef.namespace":       func(e *ingest.Event) string { return e.ObjectRef.Namespace },
	"objectRef.name":            func(e *ingest.Event) string { return e.ObjectRef.Name },
	"objectRef.uid":             func(e *ingest.Event) string { return e.ObjectRef.UID },
	"objectRef.apiGroup":        func(e *ingest.Event) string { return e.ObjectRef.APIGroup },
	"objectRef.apiVersion":      func(e *ingest.Event) string { return e.ObjectRef.APIVersion },
	"objectRef.resourceVersion": func(e *ingest.Event) string { return e.ObjectRef.ResourceVersion },
	"responseStatus.status":     func(e *ingest.Event) string { return e.ResponseStatus.Status },
	"responseStatus.reason":     func(e *ingest.Event) string { return e.ResponseStatus.Reason },
	"responseStatus.message":    func(e *ingest.Event) string { return e.ResponseStatus.Message },
	"vigil.source":              func(e *ingest.Event) string { return e.Vigil.Source },
}

var stringsFields = map[string]func(*ingest.Event) []string{
	"user.groups":             func(e *ingest.Event) []string { return e.User.Groups },
	"impersonatedUser.groups": func(e *ingest.Event) []string { return e.ImpersonatedUser.Groups },
	"sourceIPs":               func(e *ingest.Event) []string { return e.SourceIPs },
}

var boolFields = map[string]func(*ingest.Event) bool{
	"vigil.bodyUnparsed": func(e *ingest.Event) bool { return e.Vigil.BodyUnparsed },
	"vigil.truncated":    func(e *ingest.Event) bool { return e.Vigil.Truncated },
}

func (c *check) ok(x *evalCtx) bool {
	e := x.ev
	if c.code {
		code := e.ResponseStatus.Code
		in := code >= c.lo && code <= c.hi
		if c.codes != nil {
			_, in = c.codes[code]
		}
		return in != c.negate
	}
	v := c.str(e)
	var in bool
	switch {
	case c.notEmpty:
		in = v != ""
	case c.few != nil:
		for _, s := range c.few {
			if s == v {
				in = true
				break
			}
		}
	case c.set != nil:
		_, in = c.set[v]
	case c.lists != nil:
		in = x.inList(c.lists, c.list, v)
	case c.suffix != "":
		in = strings.HasSuffix(v, c.suffix)
	default:
		in = strings.HasPrefix(v, c.prefix)
	}
	return in != c.negate
}

// smallSet is the size up to which a set check compares strings one by
// one, cheaper than hashing.
const smallSet = 4

func setCheck(field string, get func(*ingest.Event) string, set map[string]struct{}) check {
	c := check{name: field, str: get, set: set}
	if len(set) <= smallSet {
		c.few = make([]string, 0, len(set))
		for v := range set {
			c.few = append(c.few, v)
		}
	}
	return c
}

// prefilter reports whether every constant condition of the rule holds.
func (r *Rule) prefilter(x *evalCtx) bool {
	for i := range r.checks {
		if !r.checks[i].ok(x) {
			return false
		}
	}
	return true
}

// ruleConstraints returns the resources a rule can match (nil: any) and
// its checks. A sequence matches where any of its steps does: its resources
// and verbs are the union of its steps'; a rule-level match adds its own.
func ruleConstraints(r *Rule, lists *compiledLists) (map[string]struct{}, []check) {
	if r.steps == nil {
		res, checks, _ := matchConstraints(r.Spec.Match, lists)
		return res, checks
	}
	var resources, verbs map[string]struct{}
	for i, st := range r.Spec.Window.Steps {
		_, checks, _ := matchConstraints(st.Match, lists)
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
		res, checks, _ = matchConstraints(r.Spec.Match, lists)
		if res != nil {
			resources = res
		}
	}
	if resources != nil {
		checks = append(checks, setCheck("objectRef.resource", stringFields["objectRef.resource"], resources))
	}
	if verbs != nil {
		checks = append(checks, setCheck("verb", stringFields["verb"], verbs))
	}
	return resources, checks
}

// setOf returns the set of the first set check on a field, or nil.
func setOf(checks []check, field string) map[string]struct{} {
	for _, c := range checks {
		if c.set != nil && !c.negate && c.name == field {
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
func matchConstraints(src string, lists *compiledLists) (map[string]struct{}, []check, bool) {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, nil, false
	}
	var checks []check
	var resources map[string]struct{}
	complete := true
	var walk func(n ast.Node)
	walk = func(n ast.Node) {
		if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
			walk(b.Left)
			walk(b.Right)
			return
		}
		c, field, ok := constCheck(n, lists)
		if !ok {
			complete = false
			return
		}
		checks = append(checks, c)
		if field == "objectRef.resource" && c.set != nil && !c.negate && resources == nil {
			resources = c.set
		}
	}
	walk(tree.Node)
	return resources, checks, complete
}

// constCheck recognizes one constant condition.
func constCheck(n ast.Node, lists *compiledLists) (check, string, bool) {
	if u, ok := n.(*ast.UnaryNode); ok && (u.Operator == "!" || u.Operator == "not") {
		c, field, ok := constCheck(u.Node, lists)
		if !ok {
			return check{}, "", false
		}
		c.negate = !c.negate
		return c, field, true
	}
	if call, ok := n.(*ast.CallNode); ok {
		return listCheck(call, lists)
	}
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return check{}, "", false
	}
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
	case "==", "!=":
		s, ok := right.(*ast.StringNode)
		if !ok {
			break
		}
		if b.Operator == "!=" && s.Value == "" {
			return check{str: get, notEmpty: true, name: field}, field, true
		}
		c := setCheck(field, get, map[string]struct{}{s.Value: {}})
		c.negate = b.Operator == "!="
		return c, field, true
	case "startsWith", "endsWith":
		s, ok := right.(*ast.StringNode)
		if !ok || s.Value == "" {
			break
		}
		if b.Operator == "startsWith" {
			return check{str: get, prefix: s.Value, name: field}, field, true
		}
		return check{str: get, suffix: s.Value, name: field}, field, true
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
		return setCheck(field, get, set), field, true
	}
	return check{}, "", false
}

// listCheck recognizes inList(FIELD, "NAME") of a list that exists.
func listCheck(call *ast.CallNode, lists *compiledLists) (check, string, bool) {
	id, ok := call.Callee.(*ast.IdentifierNode)
	if !ok || id.Value != "inList" || len(call.Arguments) != 2 || lists == nil {
		return check{}, "", false
	}
	field := fieldPath(call.Arguments[0])
	get, ok := stringFields[field]
	name, isStr := call.Arguments[1].(*ast.StringNode)
	if !ok || !isStr || !lists.has(name.Value) {
		return check{}, "", false
	}
	return check{str: get, list: name.Value, lists: lists, name: field}, field, true
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
	case "!=":
		c.codes, c.negate = map[int]struct{}{i.Value: {}}, true
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
