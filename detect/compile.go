package detect

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/vigil-k8s/vigil/ingest"
)

// env is the expression environment: the event's fields under their JSON
// names plus the named lists.
type env struct {
	eventFields
	Lists map[string][]string `expr:"lists"`
}

// eventFields is ingest.Event without its methods: expr looks up a method
// for every field access on a value that has any, and env is passed by
// pointer.
type eventFields ingest.Event

// RuleSet is a compiled, immutable set of enabled rules with their lists
// and the index that picks the rules an event can match.
type RuleSet struct {
	Rules []*Rule
	Lists map[string][]string
	// Disabled are the ids of rules that were loaded but are not enabled.
	Disabled []string

	index ruleIndex
	// needAnnotations and needExtra say whether any rule reads annotations
	// or user.extra, which the decoder fills only on demand.
	needAnnotations, needExtra bool
}

// Rule is a compiled rule. It is immutable after Compile.
type Rule struct {
	Spec RuleSpec

	idx        int
	match      *program
	exceptions []*program
	output     *template.Template
	// fastOutput is the output compiled to Go when it is simple enough
	// (template_fast.go), description the trimmed description.
	fastOutput  fastTemplate
	description string
	// idHash is the shard hash of the rule id, on which its keys' go on.
	idHash   keyHash
	by       []*program
	distinct *program
	steps    []compiledStep
	suppress *suppression
	// outputObjects is set when the output template reads requestObject
	// or responseObject, which are decoded lazily; needAnnotations when an
	// expression or the output reads annotations.
	outputObjects, needAnnotations, needExtra bool
	// resources are the resources the rule can match (nil: any), and
	// checks the constant conditions every match satisfies, tested before
	// any expression runs (index.go).
	resources map[string]struct{}
	checks    []check
	// matchByChecks is set when the checks are the whole match expression:
	// it then never runs.
	matchByChecks bool
}

type compiledStep struct {
	match *program
	by    []*program
}

// program is a compiled expression. objects is set when it reads
// requestObject or responseObject; pre then holds its top-level &&
// conditions that read neither, so an event they reject never has its
// bodies decoded (nil when there is nothing to split).
type program struct {
	p       *vm.Program
	objects bool
	pre     *vm.Program
	// fast is the expression compiled to Go (cond.go) for a boolean, str
	// or strs for a value that is a string or a list of strings; nil when
	// there is none.
	fast condFn
	str  strFn
	strs strsFn
	// boolean is set for conditions (match, exceptions, steps).
	boolean bool
}

// Stateful reports whether the rule has a window.
func (r *Rule) Stateful() bool { return r.Spec.Window != nil }

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Compile validates and compiles the enabled rules of a catalog. Every
// problem is reported, each prefixed with the file and rule id.
func Compile(c *Catalog) (*RuleSet, error) {
	lists := compileLists(c.Lists)
	rs := &RuleSet{Lists: c.Lists}
	// Rules compile on every core (a start-up cost of every command);
	// they are checked and numbered in order.
	type compiled struct {
		r   *Rule
		err error
	}
	out := make([]compiled, len(c.Rules))
	parallel(len(c.Rules), func(i int) {
		if c.Rules[i].IsEnabled() {
			out[i].r, out[i].err = compileRule(c.Rules[i], lists)
		}
	})
	var errs []error
	seen := map[string]bool{}
	for i := range c.Rules {
		spec := c.Rules[i]
		where := fmt.Sprintf("%s: rule %s", spec.File, spec.ID)
		if spec.ID == "" {
			where = fmt.Sprintf("%s: rule #%d", spec.File, i+1)
		}
		if seen[spec.ID] && spec.ID != "" {
			errs = append(errs, fmt.Errorf("%s: duplicate id", where))
			continue
		}
		seen[spec.ID] = true
		if !spec.IsEnabled() {
			rs.Disabled = append(rs.Disabled, spec.ID)
			continue
		}
		r, err := out[i].r, out[i].err
		if err != nil {
			errs = append(errs, prefixErrors(where, err))
			continue
		}
		r.idx = len(rs.Rules)
		rs.Rules = append(rs.Rules, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, r := range rs.Rules {
		rs.needAnnotations = rs.needAnnotations || r.needAnnotations
		rs.needExtra = rs.needExtra || r.needExtra
	}
	rs.index = buildIndex(rs.Rules)
	return rs, nil
}

func prefixErrors(where string, err error) error {
	var out []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, fmt.Errorf("%s: %w", where, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s: %w", where, err)
}

func compileRule(spec RuleSpec, lists *compiledLists) (*Rule, error) {
	r := &Rule{Spec: spec}
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if !idPattern.MatchString(spec.ID) {
		fail("id %q: want lower-case letters, digits and dashes", spec.ID)
	}
	if strings.TrimSpace(spec.Title) == "" {
		fail("title is required")
	}
	if spec.Severity == SeverityUnknown {
		fail("severity is required (info, low, medium, high or critical)")
	}
	if spec.Audit.Level < LevelMetadata {
		fail("audit.level is required (Metadata, Request or RequestResponse)")
	}
	var refs exprRefs
	compileBool := func(field, src string) *program {
		p, err := compileExpr(src, lists, &refs, true)
		if err != nil {
			fail("%s: %v", field, err)
		}
		return p
	}
	compileAny := func(field, src string) *program {
		p, err := compileExpr(src, lists, &refs, false)
		if err != nil {
			fail("%s: %v", field, err)
		}
		return p
	}
	w := spec.Window
	if w == nil || w.Kind != WindowSequence || spec.Match != "" {
		if strings.TrimSpace(spec.Match) == "" {
			fail("match is required")
		} else {
			r.match = compileBool("match", spec.Match)
		}
	}
	for i, e := range spec.Exceptions {
		r.exceptions = append(r.exceptions, compileBool(fmt.Sprintf("exceptions[%d]", i), e))
	}
	if w != nil {
		checkFirstSeenFields(w, fail)
		if w.Within <= 0 && w.Kind != WindowFirstSeen {
			fail("window.within must be a positive duration")
		}
		if w.Cooldown < 0 {
			fail("window.cooldown must not be negative")
		}
		for i, b := range w.By {
			r.by = append(r.by, compileAny(fmt.Sprintf("window.by[%d]", i), b))
		}
		switch w.Kind {
		case WindowThreshold:
			if w.Count < 1 {
				fail("window.count must be at least 1")
			}
		case WindowDistinct:
			if w.Count < 1 {
				fail("window.count must be at least 1")
			}
			if strings.TrimSpace(w.Distinct) == "" {
				fail("window.distinct is required for kind distinct")
			} else {
				r.distinct = compileAny("window.distinct", w.Distinct)
			}
		case WindowSequence:
			if len(w.Steps) < 2 {
				fail("window.steps: a sequence needs at least 2 steps")
			}
			for i, s := range w.Steps {
				field := fmt.Sprintf("window.steps[%d]", i)
				var st compiledStep
				if strings.TrimSpace(s.Match) == "" {
					fail("%s.match is required", field)
				} else {
					st.match = compileBool(field+".match", s.Match)
				}
				if len(s.By) == 0 {
					fail("%s.by is required: the key that links the steps", field)
				}
				for j, b := range s.By {
					st.by = append(st.by, compileAny(fmt.Sprintf("%s.by[%d]", field, j), b))
				}
				r.steps = append(r.steps, st)
			}
		case WindowFirstSeen:
			r.Spec.Window, r.distinct = compileFirstSeen(w, lists, &refs, compileAny, compileBool, fail)
		default:
			fail("window.kind %q: want threshold, distinct, sequence or first_seen", w.Kind)
		}
	}
	if s, err := compileSuppress(spec, compileAny); err != nil {
		fail("%v", err)
	} else {
		r.suppress = s
	}
	out := spec.Output
	if out == "" {
		out = spec.Title
	}
	funcs := outputFuncs(lists)
	t, err := parseOutput(spec.ID, out, funcs)
	if err != nil {
		fail("output: %v", err)
	}
	r.output, r.fastOutput = t, compileFast(spec.ID, out, funcs)
	r.description = strings.TrimSpace(spec.Description)
	r.idHash = newKeyHash(0).add(spec.ID)
	r.outputObjects = strings.Contains(out, "Object")
	r.needAnnotations = refs.annotations || strings.Contains(out, "annotations")
	r.needExtra = refs.extra || strings.Contains(out, "extra")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r.resources, r.checks = ruleConstraints(r, lists)
	if r.match != nil && r.steps == nil {
		_, _, r.matchByChecks = matchConstraints(spec.Match, lists)
	}
	return r, nil
}

// exprRefs records which lazily filled parts of the environment the
// expressions of a rule read.
type exprRefs struct {
	objects, annotations, extra bool
}

func compileExpr(src string, lists *compiledLists, refs *exprRefs, boolean bool) (*program, error) {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, err
	}
	var errs []error
	var own exprRefs
	ast.Walk(&tree.Node, visitor(func(n ast.Node) {
		switch n := n.(type) {
		case *ast.IdentifierNode:
			switch n.Value {
			case "requestObject", "responseObject":
				own.objects = true
			case "annotations":
				own.annotations = true
			}
		case *ast.StringNode:
			// user.extra parses as a member with the property "extra".
			if n.Value == "extra" {
				own.extra = true
			}
		case *ast.CallNode:
			// A list named by a constant must exist: a typo would make the
			// rule silently match nothing (or everything, in an exception).
			id, ok := n.Callee.(*ast.IdentifierNode)
			if ok && (id.Value == "inList" || id.Value == "anyInList") && len(n.Arguments) == 2 {
				if s, ok := n.Arguments[1].(*ast.StringNode); ok && !lists.has(s.Value) {
					errs = append(errs, fmt.Errorf("%s: no list named %q", id.Value, s.Value))
				}
			}
		case *ast.MemberNode:
			if id, ok := n.Node.(*ast.IdentifierNode); ok && id.Value == "lists" {
				if s, ok := n.Property.(*ast.StringNode); ok && !lists.has(s.Value) {
					errs = append(errs, fmt.Errorf("lists.%s: no list named %q", s.Value, s.Value))
				}
			}
		}
	}))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	refs.objects = refs.objects || own.objects
	refs.annotations = refs.annotations || own.annotations
	refs.extra = refs.extra || own.extra
	opts := append([]expr.Option{expr.Env(env{})}, helperOptions(lists)...)
	if boolean {
		opts = append(opts, expr.AsBool())
	}
	p, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, err
	}
	prog := &program{p: p, objects: own.objects, boolean: boolean}
	cc := newCondCompiler(lists, opts)
	if boolean {
		// A whole expression without a Go form stays on the VM alone.
		if f, err := cc.nativeCond(tree.Node); err == nil {
			prog.fast = f
		}
	} else if f, err := cc.str(tree.Node); err == nil {
		prog.str = f
	} else if f, err := cc.strs(tree.Node); err == nil {
		prog.strs = f
	}
	if boolean && own.objects {
		if pre := bodyFreeConjuncts(src); pre != "" {
			prog.pre, err = expr.Compile(pre, opts...)
			if err != nil {
				return nil, fmt.Errorf("BUG: body-free part %q of a valid expression does not compile: %w", pre, err)
			}
		}
	}
	return prog, nil
}

type visitor func(ast.Node)

func (v visitor) Visit(n *ast.Node) { v(*n) }

func fieldPath(n ast.Node) string {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		return n.Value
	case *ast.MemberNode:
		s, ok := n.Property.(*ast.StringNode)
		if !ok || n.Optional {
			return ""
		}
		if p := fieldPath(n.Node); p != "" {
			return p + "." + s.Value
		}
	}
	return ""
}

// bodyFreeConjuncts returns the top-level && conditions of src that do not
// read requestObject or responseObject, joined again with &&, or "" when
// every condition (or none) reads a body.
func bodyFreeConjuncts(src string) string {
	tree, err := parser.Parse(src)
	if err != nil {
		return ""
	}
	var free []string
	total := 0
	var walk func(n ast.Node)
	walk = func(n ast.Node) {
		if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
			walk(b.Left)
			walk(b.Right)
			return
		}
		total++
		readsBody := false
		ast.Walk(&n, visitor(func(x ast.Node) {
			if id, ok := x.(*ast.IdentifierNode); ok && (id.Value == "requestObject" || id.Value == "responseObject") {
				readsBody = true
			}
		}))
		if !readsBody {
			free = append(free, "("+n.String()+")")
		}
	}
	walk(tree.Node)
	if len(free) == 0 || len(free) == total {
		return ""
	}
	return strings.Join(free, " && ")
}
