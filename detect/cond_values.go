package detect

import (
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr/ast"
)

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
	case *ast.PointerNode:
		// The element of the quantifier around, never one of a VM part's.
		if slot, ok := c.vars["#"]; ok && n.Name == "" {
			return func(x *evalCtx) (string, bool) { return x.vars[slot], true }, nil
		}
		return nil, errNotNative
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
		return letIn(c, n, c.str)
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

// stringHelpers are the helpers from a string to a string, called the
// same way by the VM.
var stringHelpers = map[string]func(string) string{
	"execCommand":   ExecCommand,
	"imageRegistry": ImageRegistry,
	"imageTag":      ImageTag,
	"uaFamily":      UserAgentFamily,
	"ipNetwork":     IPNetwork,
}
