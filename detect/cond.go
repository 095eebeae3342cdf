package detect

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
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
	case *ast.VariableDeclaratorNode:
		return c.let(n)
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

// let compiles `let name = value; expr` where value is a string.
func (c *condCompiler) let(n *ast.VariableDeclaratorNode) (condFn, error) {
	val, err := c.str(n.Value)
	if err != nil {
		return nil, err
	}
	slot, restore := c.declare(n.Name)
	defer restore()
	body, err := c.cond(n.Expr)
	if err != nil {
		return nil, err
	}
	return func(x *evalCtx) (bool, bool) {
		v, ok := val(x)
		if !ok {
			return false, false
		}
		x.setVar(slot, v)
		return body(x)
	}, nil
}

// str compiles a string-valued node.
func (c *condCompiler) str(n ast.Node) (strFn, error) {
	switch n := n.(type) {
	case *ast.StringNode:
		v := n.Value
		return func(*evalCtx) (string, bool) { return v, true }, nil
	case *ast.IdentifierNode:
		if slot, ok := c.vars[n.Value]; ok {
			return func(x *evalCtx) (string, bool) { return x.vars[slot], true }, nil
		}
	case *ast.BinaryNode:
		if n.Operator != "+" {
			break
		}
		l, err := c.str(n.Left)
		if err != nil {
			return nil, err
		}
		r, err := c.str(n.Right)
		if err != nil {
			return nil, err
		}
		return func(x *evalCtx) (string, bool) {
			a, ok := l(x)
			if !ok {
				return "", false
			}
			b, ok := r(x)
			return x.concat(a, b), ok
		}, nil
	case *ast.SliceNode:
		return c.slice(n)
	case *ast.ConditionalNode:
		cond, err := c.cond(n.Cond)
		if err != nil {
			return nil, err
		}
		// One branch may be a VM part when the other is a string in Go:
		// the part must then yield a string too.
		a, aerr := c.str(n.Exp1)
		b, berr := c.str(n.Exp2)
		switch {
		case aerr != nil && berr != nil:
			return nil, errNotNative
		case aerr != nil:
			a, err = c.vmString(n.Exp1)
		case berr != nil:
			b, err = c.vmString(n.Exp2)
		}
		if err != nil {
			return nil, err
		}
		return func(x *evalCtx) (string, bool) {
			v, ok := cond(x)
			switch {
			case !ok:
				return "", false
			case v:
				return a(x)
			}
			return b(x)
		}, nil
	case *ast.MemberNode:
		if f, ok := c.annotation(n); ok {
			return f, nil
		}
		if i, ok := n.Property.(*ast.IntegerNode); ok && !n.Optional {
			list, err := c.strs(n.Node)
			if err != nil {
				return nil, err
			}
			idx := i.Value
			return func(x *evalCtx) (string, bool) {
				l, ok := list(x)
				if !ok {
					return "", false
				}
				j := idx
				if j < 0 {
					j += len(l)
				}
				if j < 0 || j >= len(l) {
					return "", false // the VM fails: index out of range
				}
				return l[j], true
			}, nil
		}
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || c.isVar(id.Value) || len(n.Arguments) != 1 {
			break
		}
		if id.Value == "execClass" {
			// Every exec rule classifies the same command: once per event.
			if argv, err := c.strs(n.Arguments[0]); err == nil {
				return func(x *evalCtx) (string, bool) {
					v, ok := argv(x)
					return x.execClass(v), ok
				}, nil
			}
			break
		}
		if fn, ok := stringHelpers[id.Value]; ok {
			arg, err := c.str(n.Arguments[0])
			if err != nil {
				return nil, err
			}
			return func(x *evalCtx) (string, bool) {
				v, ok := arg(x)
				return fn(v), ok
			}, nil
		}
	case *ast.BuiltinNode:
		// string() of a string is the string.
		if n.Name == "string" && len(n.Arguments) == 1 {
			return c.str(n.Arguments[0])
		}
	case *ast.VariableDeclaratorNode:
		val, err := c.str(n.Value)
		if err != nil {
			return nil, err
		}
		slot, restore := c.declare(n.Name)
		defer restore()
		body, err := c.str(n.Expr)
		if err != nil {
			return nil, err
		}
		return func(x *evalCtx) (string, bool) {
			v, ok := val(x)
			if !ok {
				return "", false
			}
			x.setVar(slot, v)
			return body(x)
		}, nil
	}
	if get, ok := stringFields[fieldPath(n)]; ok && !c.shadowed(n) {
		return func(x *evalCtx) (string, bool) { return get(x.ev), true }, nil
	}
	return nil, errNotNative
}

// annotation compiles annotations["key"]: "" when the event has none.
func (c *condCompiler) annotation(n *ast.MemberNode) (strFn, bool) {
	id, ok := n.Node.(*ast.IdentifierNode)
	key, isStr := n.Property.(*ast.StringNode)
	if !ok || !isStr || id.Value != "annotations" || n.Optional || c.isVar(id.Value) {
		return nil, false
	}
	k := key.Value
	return func(x *evalCtx) (string, bool) { return x.ev.Annotations[k], true }, true
}

// slice compiles s[from:to] of a string as the VM does: bounds are
// clamped, negative ones count from the end.
func (c *condCompiler) slice(n *ast.SliceNode) (strFn, error) {
	s, err := c.str(n.Node)
	if err != nil {
		return nil, err
	}
	bound := func(b ast.Node) (int, bool, error) {
		if b == nil {
			return 0, false, nil
		}
		i, ok := b.(*ast.IntegerNode)
		if !ok {
			return 0, false, errNotNative
		}
		return i.Value, true, nil
	}
	from, _, err := bound(n.From)
	if err != nil {
		return nil, err
	}
	to, hasTo, err := bound(n.To)
	if err != nil {
		return nil, err
	}
	return func(x *evalCtx) (string, bool) {
		v, ok := s(x)
		if !ok {
			return "", false
		}
		a, b := from, len(v)
		if hasTo {
			b = to
		}
		if a < 0 {
			a = max(0, len(v)+a)
		}
		if b < 0 {
			b = max(0, len(v)+b)
		}
		b = min(b, len(v))
		a = min(a, b)
		return v[a:b], true
	}, nil
}

// strs compiles a node whose value is a list of strings.
func (c *condCompiler) strs(n ast.Node) (strsFn, error) {
	switch n := n.(type) {
	case *ast.MemberNode:
		if id, ok := n.Node.(*ast.IdentifierNode); ok && id.Value == "lists" && !c.isVar("lists") && !n.Optional {
			if s, ok := n.Property.(*ast.StringNode); ok && c.lists.has(s.Value) {
				list := c.raw[s.Value]
				return func(*evalCtx) ([]string, bool) { return list, true }, nil
			}
			return nil, errNotNative
		}
	case *ast.BuiltinNode:
		if n.Name != "split" || len(n.Arguments) != 2 {
			return nil, errNotNative
		}
		s, err := c.str(n.Arguments[0])
		if err != nil {
			return nil, err
		}
		sep, err := c.str(n.Arguments[1])
		if err != nil {
			return nil, err
		}
		return func(x *evalCtx) ([]string, bool) {
			a, ok := s(x)
			if !ok {
				return nil, false
			}
			b, ok := sep(x)
			if !ok {
				return nil, false
			}
			return strings.Split(a, b), true
		}, nil
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || c.isVar(id.Value) || len(n.Arguments) != 2 {
			return nil, errNotNative
		}
		switch id.Value {
		case "queryParam":
			uri, err := c.str(n.Arguments[0])
			if err != nil {
				return nil, err
			}
			name, err := c.str(n.Arguments[1])
			if err != nil {
				return nil, err
			}
			return func(x *evalCtx) ([]string, bool) {
				u, ok := uri(x)
				if !ok {
					return nil, false
				}
				k, ok := name(x)
				return x.queryParam(u, k), ok
			}, nil
		case "identities":
			user, err := c.str(n.Arguments[0])
			if err != nil {
				return nil, err
			}
			groups, err := c.strs(n.Arguments[1])
			if err != nil {
				return nil, err
			}
			return func(x *evalCtx) ([]string, bool) {
				u, ok := user(x)
				if !ok {
					return nil, false
				}
				g, ok := groups(x)
				return x.identities(u, g), ok
			}, nil
		}
		return nil, errNotNative
	}
	if get, ok := stringsFields[fieldPath(n)]; ok && !c.shadowed(n) {
		return func(x *evalCtx) ([]string, bool) { return get(x.ev), true }, nil
	}
	return nil, errNotNative
}

// integer compiles an integer-valued node.
func (c *condCompiler) integer(n ast.Node) (intFn, error) {
	switch n := n.(type) {
	case *ast.IntegerNode:
		v := n.Value
		return func(*evalCtx) (int, bool) { return v, true }, nil
	case *ast.BuiltinNode:
		if n.Name != "len" || len(n.Arguments) != 1 {
			return nil, errNotNative
		}
		if s, err := c.str(n.Arguments[0]); err == nil {
			return func(x *evalCtx) (int, bool) {
				v, ok := s(x)
				return utf8.RuneCountInString(v), ok
			}, nil
		}
		ss, err := c.strs(n.Arguments[0])
		if err != nil {
			return nil, err
		}
		return func(x *evalCtx) (int, bool) {
			v, ok := ss(x)
			return len(v), ok
		}, nil
	}
	if fieldPath(n) == "responseStatus.code" && !c.shadowed(n) {
		return func(x *evalCtx) (int, bool) { return x.ev.ResponseStatus.Code, true }, nil
	}
	return nil, errNotNative
}

// vmString compiles a string-valued node as a VM part, as vmPart does.
func (c *condCompiler) vmString(n ast.Node) (strFn, error) {
	p, err := c.vmProgram(n)
	if err != nil {
		return nil, err
	}
	return func(x *evalCtx) (string, bool) {
		out, ok := x.runValuePart(p)
		s, isStr := out.(string)
		return s, ok && isStr
	}, nil
}

// vmPart compiles a node the Go form does not cover as an expression of its
// own, run on the VM. It must not read a let variable of the enclosing
// expression, and must yield a bool.
func (c *condCompiler) vmPart(n ast.Node) (condFn, error) {
	p, err := c.vmProgram(n)
	if err != nil {
		return nil, err
	}
	return func(x *evalCtx) (bool, bool) {
		out, ok := x.runValuePart(p)
		b, isBool := out.(bool)
		return b, ok && isBool
	}, nil
}

// partProgram is a VM part, compiled when it first runs: many never do,
// their rule rejected by what comes before, and compiling costs start-up.
type partProgram struct {
	src     string
	opts    []expr.Option
	objects bool
	once    sync.Once
	p       *vm.Program
}

func (pp *partProgram) program() *vm.Program {
	pp.once.Do(func() {
		// The whole expression compiled with these options: a part that
		// does not is a failure like any other, and the VM decides.
		pp.p, _ = expr.Compile(pp.src, pp.opts...)
	})
	return pp.p
}

// vmProgram makes a node an expression of its own, noting whether it reads
// the bodies.
func (c *condCompiler) vmProgram(n ast.Node) (*partProgram, error) {
	free := false
	objects := false
	ast.Walk(&n, visitor(func(m ast.Node) {
		if id, ok := m.(*ast.IdentifierNode); ok {
			if _, isVar := c.vars[id.Value]; isVar {
				free = true
			}
			if id.Value == "requestObject" || id.Value == "responseObject" {
				objects = true
			}
		}
	}))
	if free {
		return nil, fmt.Errorf("%s reads a variable of the expression around it", n)
	}
	return &partProgram{src: n.String(), opts: c.opts, objects: objects}, nil
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

// stringHelpers are the helpers from a string to a string, called the
// same way by the VM.
var stringHelpers = map[string]func(string) string{
	"execCommand":   ExecCommand,
	"imageRegistry": ImageRegistry,
	"imageTag":      ImageTag,
	"uaFamily":      UserAgentFamily,
	"ipNetwork":     IPNetwork,
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

// runValuePart runs a VM part of a compiled expression; a failure is not
// reported here: the whole expression then runs on the VM, which reports
// it.
func (x *evalCtx) runValuePart(pp *partProgram) (any, bool) {
	p := pp.program()
	if p == nil {
		return nil, false
	}
	if pp.objects {
		x.loadObjects()
	}
	out, err := x.w.vm.Run(p, x.env())
	return out, err == nil
}

// setVar sets a let variable of the condition being evaluated.
func (x *evalCtx) setVar(slot int, v string) {
	for len(x.vars) <= slot {
		x.vars = append(x.vars, "")
	}
	x.vars[slot] = v
}

// queryParam is queryParam with the query of the event's requestURI parsed
// once per event. The lists are the evaluation's: not to be changed.
func (x *evalCtx) queryParam(uri, name string) []string {
	if !x.query.set || x.query.uri != uri {
		x.query.uri, x.query.set, x.query.v = uri, true, nil
		if i := strings.IndexByte(uri, '?'); i >= 0 {
			q, err := url.ParseQuery(uri[i+1:])
			if err == nil || len(q) > 0 {
				x.query.v = q
			}
		}
	}
	return x.query.v[name]
}

// execClass is ExecClass, remembered for the last argv of the event.
func (x *evalCtx) execClass(argv []string) string {
	m := &x.class
	if m.set && len(m.argv) == len(argv) && (len(argv) == 0 || &m.argv[0] == &argv[0]) {
		return m.class
	}
	m.argv, m.set, m.class = argv, true, ExecClass(argv)
	return m.class
}

// identities is Identities built in the evaluation's memory: valid until
// the next event, as keys are interned anyway.
func (x *evalCtx) identities(username string, groups []string) []string {
	out := append(x.ids[:0], x.concat("user:", username))
	for _, g := range groups {
		out = append(out, x.concat("group:", g))
	}
	x.ids = out
	return out
}
