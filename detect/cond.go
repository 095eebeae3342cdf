package detect

import (
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// Most conditions are field comparisons, set membership and list lookups
// joined by && and ||. condCompiler turns such an expression into Go
// closures over the decoded event, so it runs without the expression VM and
// without boxing a field per access. A part it does not know (a body, a
// predicate, a helper over objects) stays an expression of its own, run on
// the VM when evaluation reaches it. Every closure answers like the VM: when
// it cannot (an index out of range, a VM part that failed or did not yield
// a bool), it says so and the whole expression runs on the VM, which then
// decides and reports the error as it always did.

// Compiled conditions and values; ok false means "run the VM instead".
type (
	condFn func(x *evalCtx) (v, ok bool)
	strFn  func(x *evalCtx) (string, bool)
	strsFn func(x *evalCtx) ([]string, bool)
	intFn  func(x *evalCtx) (int, bool)
)

// errNotNative says a node has no Go form; the caller makes it a VM part.
var errNotNative = errors.New("no Go form")

// condCompiler compiles the nodes of one expression.
type condCompiler struct {
	lists *compiledLists
	raw   map[string][]string
	opts  []expr.Option
	// vars are the let variables in scope, by name: their slot in
	// evalCtx.vars; slots counts the slots given out.
	vars  map[string]int
	slots int
}

func newCondCompiler(lists *compiledLists, opts []expr.Option) *condCompiler {
	return &condCompiler{lists: lists, raw: lists.raw, opts: opts, vars: map[string]int{}}
}

// cond compiles a boolean node: in Go when it can, else as a VM part.
func (c *condCompiler) cond(n ast.Node) (condFn, error) {
	if f, err := c.nativeCond(n); err == nil {
		return f, nil
	}
	return c.vmPart(n)
}

func (c *condCompiler) nativeCond(n ast.Node) (condFn, error) {
	switch n := n.(type) {
	case *ast.BoolNode:
		v := n.Value
		return func(*evalCtx) (bool, bool) { return v, true }, nil
	case *ast.UnaryNode:
		if n.Operator != "!" && n.Operator != "not" {
			return nil, errNotNative
		}
		f, err := c.cond(n.Node)
		if err != nil {
			return nil, err
		}
		return func(x *evalCtx) (bool, bool) {
			v, ok := f(x)
			return !v, ok
		}, nil
	case *ast.BinaryNode:
		return c.binary(n)
	case *ast.CallNode:
		return c.call(n)
	case *ast.BuiltinNode:
		return c.quantifier(n)
	case *ast.VariableDeclaratorNode:
		return letIn(c, n, c.cond)
	case *ast.IdentifierNode, *ast.MemberNode:
		if get, ok := boolFields[fieldPath(n)]; ok && !c.shadowed(n) {
			return func(x *evalCtx) (bool, bool) { return get(x.ev), true }, nil
		}
	}
	return nil, errNotNative
}

func (c *condCompiler) binary(n *ast.BinaryNode) (condFn, error) {
	switch n.Operator {
	case "&&", "and", "||", "or":
		l, err := c.cond(n.Left)
		if err != nil {
			return nil, err
		}
		r, err := c.cond(n.Right)
		if err != nil {
			return nil, err
		}
		if n.Operator == "&&" || n.Operator == "and" {
			return func(x *evalCtx) (bool, bool) {
				if v, ok := l(x); !ok || !v {
					return false, ok
				}
				return r(x)
			}, nil
		}
		return func(x *evalCtx) (bool, bool) {
			if v, ok := l(x); !ok || v {
				return v, ok
			}
			return r(x)
		}, nil
	case "==", "!=":
		f, err := c.equal(n.Left, n.Right)
		if err != nil || n.Operator == "==" {
			return f, err
		}
		return func(x *evalCtx) (bool, bool) {
			v, ok := f(x)
			return !v, ok
		}, nil
	case "<", "<=", ">", ">=":
		return c.compare(n.Operator, n.Left, n.Right)
	case "in":
		return c.in(n.Left, n.Right)
	case "startsWith", "endsWith", "contains":
		l, err := c.str(n.Left)
		if err != nil {
			return nil, err
		}
		r, err := c.str(n.Right)
		if err != nil {
			return nil, err
		}
		test := map[string]func(string, string) bool{
			"startsWith": strings.HasPrefix, "endsWith": strings.HasSuffix, "contains": strings.Contains,
		}[n.Operator]
		return func(x *evalCtx) (bool, bool) {
			a, ok := l(x)
			if !ok {
				return false, false
			}
			b, ok := r(x)
			return ok && test(a, b), ok
		}, nil
	case "matches":
		pat, ok := n.Right.(*ast.StringNode)
		if !ok {
			return nil, errNotNative
		}
		l, err := c.str(n.Left)
		if err != nil {
			return nil, err
		}
		re, err := regexp.Compile(pat.Value)
		if err != nil {
			return nil, errNotNative
		}
		return func(x *evalCtx) (bool, bool) {
			s, ok := l(x)
			return ok && re.MatchString(s), ok
		}, nil
	}
	return nil, errNotNative
}

// equal compiles == of two strings, two integers or two booleans, and of
// a string with nil (never equal).
func (c *condCompiler) equal(left, right ast.Node) (condFn, error) {
	_, lnil := left.(*ast.NilNode)
	_, rnil := right.(*ast.NilNode)
	if lnil != rnil {
		s := left
		if lnil {
			s = right
		}
		if _, err := c.str(s); err != nil {
			return nil, errNotNative
		}
		return func(*evalCtx) (bool, bool) { return false, true }, nil
	}
	if l, err := c.str(left); err == nil {
		r, err := c.str(right)
		if err != nil {
			return nil, errNotNative
		}
		if s, ok := right.(*ast.StringNode); ok {
			want := s.Value
			return func(x *evalCtx) (bool, bool) {
				v, ok := l(x)
				return ok && v == want, ok
			}, nil
		}
		return func(x *evalCtx) (bool, bool) {
			a, ok := l(x)
			if !ok {
				return false, false
			}
			b, ok := r(x)
			return ok && a == b, ok
		}, nil
	}
	if l, err := c.integer(left); err == nil {
		r, err := c.integer(right)
		if err != nil {
			return nil, errNotNative
		}
		return func(x *evalCtx) (bool, bool) {
			a, ok := l(x)
			if !ok {
				return false, false
			}
			b, ok := r(x)
			return ok && a == b, ok
		}, nil
	}
	_, lb := left.(*ast.BoolNode)
	_, rb := right.(*ast.BoolNode)
	if lb || rb {
		l, err := c.nativeCond(left)
		if err != nil {
			return nil, errNotNative
		}
		r, err := c.nativeCond(right)
		if err != nil {
			return nil, errNotNative
		}
		return func(x *evalCtx) (bool, bool) {
			a, ok := l(x)
			if !ok {
				return false, false
			}
			b, ok := r(x)
			return ok && a == b, ok
		}, nil
	}
	return nil, errNotNative
}

func (c *condCompiler) compare(op string, left, right ast.Node) (condFn, error) {
	l, err := c.integer(left)
	if err != nil {
		return nil, err
	}
	r, err := c.integer(right)
	if err != nil {
		return nil, err
	}
	test := map[string]func(a, b int) bool{
		"<":  func(a, b int) bool { return a < b },
		"<=": func(a, b int) bool { return a <= b },
		">":  func(a, b int) bool { return a > b },
		">=": func(a, b int) bool { return a >= b },
	}[op]
	return func(x *evalCtx) (bool, bool) {
		a, ok := l(x)
		if !ok {
			return false, false
		}
		b, ok := r(x)
		return ok && test(a, b), ok
	}, nil
}

// in compiles membership of a string in constants or in a list of strings,
// and of an integer in constants.
func (c *condCompiler) in(left, right ast.Node) (condFn, error) {
	if arr, ok := right.(*ast.ArrayNode); ok {
		if l, err := c.str(left); err == nil {
			set := map[string]struct{}{}
			for _, e := range arr.Nodes {
				s, ok := e.(*ast.StringNode)
				if !ok {
					return nil, errNotNative
				}
				set[s.Value] = struct{}{}
			}
			if len(set) <= smallSet {
				// Compared one by one: cheaper than hashing.
				few := slices.Collect(maps.Keys(set))
				return func(x *evalCtx) (bool, bool) {
					v, ok := l(x)
					return ok && slices.Contains(few, v), ok
				}, nil
			}
			return func(x *evalCtx) (bool, bool) {
				v, ok := l(x)
				_, in := set[v]
				return ok && in, ok
			}, nil
		}
		l, err := c.integer(left)
		if err != nil {
			return nil, errNotNative
		}
		set := map[int]struct{}{}
		for _, e := range arr.Nodes {
			i, ok := e.(*ast.IntegerNode)
			if !ok {
				return nil, errNotNative
			}
			set[i.Value] = struct{}{}
		}
		return func(x *evalCtx) (bool, bool) {
			v, ok := l(x)
			_, in := set[v]
			return ok && in, ok
		}, nil
	}
	l, err := c.str(left)
	if err != nil {
		return nil, err
	}
	r, err := c.strs(right)
	if err != nil {
		return nil, err
	}
	return func(x *evalCtx) (bool, bool) {
		v, ok := l(x)
		if !ok {
			return false, false
		}
		list, ok := r(x)
		if !ok {
			return false, false
		}
		for _, s := range list {
			if s == v {
				return true, true
			}
		}
		return false, true
	}, nil
}

// call compiles the helpers that test strings against the named lists.
func (c *condCompiler) call(n *ast.CallNode) (condFn, error) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok || c.isVar(id.Value) {
		return nil, errNotNative
	}
	args := n.Arguments
	// The last argument names a list: a constant, checked at compile time.
	list := func(i int) (string, bool) {
		if i >= len(args) {
			return "", false
		}
		s, ok := args[i].(*ast.StringNode)
		return s.Value, ok && c.lists.has(s.Value)
	}
	lists := c.lists
	switch id.Value {
	case "inList", "inNetworks":
		name, ok := list(1)
		if !ok || len(args) != 2 {
			return nil, errNotNative
		}
		s, err := c.str(args[0])
		if err != nil {
			return nil, err
		}
		if id.Value == "inNetworks" {
			return func(x *evalCtx) (bool, bool) {
				v, ok := s(x)
				return ok && lists.inNetworks(name, v), ok
			}, nil
		}
		return func(x *evalCtx) (bool, bool) {
			v, ok := s(x)
			return ok && x.inList(lists, name, v), ok
		}, nil
	case "anyInList", "outsideNetworks":
		name, ok := list(1)
		if !ok || len(args) != 2 {
			return nil, errNotNative
		}
		ss, err := c.strs(args[0])
		if err != nil {
			return nil, err
		}
		if id.Value == "outsideNetworks" {
			return func(x *evalCtx) (bool, bool) {
				v, ok := ss(x)
				return ok && lists.outsideNetworks(name, v), ok
			}, nil
		}
		return func(x *evalCtx) (bool, bool) {
			v, ok := ss(x)
			if !ok {
				return false, false
			}
			for _, s := range v {
				if x.inList(lists, name, s) {
					return true, true
				}
			}
			return false, true
		}, nil
	case "userAgentFits":
		name, ok := list(2)
		if !ok || len(args) != 3 {
			return nil, errNotNative
		}
		user, err := c.str(args[0])
		if err != nil {
			return nil, err
		}
		agent, err := c.str(args[1])
		if err != nil {
			return nil, err
		}
		return func(x *evalCtx) (bool, bool) {
			u, ok := user(x)
			if !ok {
				return false, false
			}
			a, ok := agent(x)
			return ok && lists.agentFits(name, u, a), ok
		}, nil
	case "hasAnyPrefix":
		if len(args) < 1 {
			return nil, errNotNative
		}
		s, err := c.str(args[0])
		if err != nil {
			return nil, err
		}
		var prefixes []string
		for _, a := range args[1:] {
			p, ok := a.(*ast.StringNode)
			if !ok {
				return nil, errNotNative
			}
			prefixes = append(prefixes, p.Value)
		}
		return func(x *evalCtx) (bool, bool) {
			v, ok := s(x)
			if !ok {
				return false, false
			}
			for _, p := range prefixes {
				if strings.HasPrefix(v, p) {
					return true, true
				}
			}
			return false, true
		}, nil
	}
	return nil, errNotNative
}

// quantifier compiles any, all and none of a list of strings, the
// predicate reading the element as #.
func (c *condCompiler) quantifier(n *ast.BuiltinNode) (condFn, error) {
	if len(n.Arguments) != 2 {
		return nil, errNotNative
	}
	pred, isPred := n.Arguments[1].(*ast.PredicateNode)
	// want is the predicate's value that decides the result at once.
	want, isQuant := map[string]bool{"any": true, "all": false, "none": true}[n.Name]
	if !isPred || !isQuant {
		return nil, errNotNative
	}
	items, err := c.strs(n.Arguments[0])
	if err != nil {
		return nil, err
	}
	slot, restore := c.declare("#")
	defer restore()
	body, err := c.cond(pred.Node)
	if err != nil {
		return nil, err
	}
	decided := n.Name == "any"
	return func(x *evalCtx) (bool, bool) {
		v, ok := items(x)
		if !ok {
			return false, false
		}
		for _, s := range v {
			x.setVar(slot, s)
			r, ok := body(x)
			if !ok {
				return false, false
			}
			if r == want {
				return decided, true
			}
		}
		return !decided, true
	}, nil
}

// letIn compiles `let name = value; expr` where value is a string and
// body compiles expr (a condition, a string).
func letIn[T any, F ~func(*evalCtx) (T, bool)](c *condCompiler, n *ast.VariableDeclaratorNode, body func(ast.Node) (F, error)) (F, error) {
	var none F
	val, err := c.str(n.Value)
	if err != nil {
		return none, err
	}
	slot, restore := c.declare(n.Name)
	defer restore()
	expr, err := body(n.Expr)
	if err != nil {
		return none, err
	}
	return func(x *evalCtx) (T, bool) {
		v, ok := val(x)
		if !ok {
			var zero T
			return zero, false
		}
		x.setVar(slot, v)
		return expr(x)
	}, nil
}

// declare brings a let variable into scope and returns its slot and the
// function that ends its scope. Slots are not reused: an inner let does
// not overwrite an outer one still in use.
func (c *condCompiler) declare(name string) (int, func()) {
	slot := c.slots
	c.slots++
	old, shadows := c.vars[name]
	c.vars[name] = slot
	return slot, func() {
		if shadows {
			c.vars[name] = old
		} else {
			delete(c.vars, name)
		}
	}
}
func (c *condCompiler) isVar(name string) bool { _, ok := c.vars[name]; return ok }

// shadowed reports whether a field path starts with a let variable.
func (c *condCompiler) shadowed(n ast.Node) bool {
	for {
		switch m := n.(type) {
		case *ast.IdentifierNode:
			return c.isVar(m.Value)
		case *ast.MemberNode:
			n = m.Node
		default:
			return false
		}
	}
}
