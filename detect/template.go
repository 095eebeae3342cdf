package detect

import (
	"reflect"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/vigil-k8s/vigil/ingest"
)

// Output templates read nested maps, where text/template prints a missing
// key as "<no value>" and fails on a field of a missing or null value.
// docs/rules.md promises that a missing field renders empty, so parseOutput
// rewrites every field chain that may miss (a body, an annotation, a field
// of a with or range element) into a call: fieldFunc yields no value
// instead of failing, textFunc prints it as "". Chains that templateData
// always fills (.user.username, .objectRef.name, .count ...) keep text/
// template's own, cheaper evaluation.
const (
	fieldFunc = "vigil_field"
	textFunc  = "vigil_text"
)

// parseOutput parses a rule's output template and rewrites it as above.
func parseOutput(name, src string, funcs template.FuncMap) (*template.Template, error) {
	t, err := template.New(name).Funcs(funcs).Parse(src)
	if err != nil {
		return nil, err
	}
	rw := rewriter{known: templateData(&ingest.Event{}, &Alert{}, &windowResult{})}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			// In templates it defines, dot and $ are what the caller passes.
			rw.list(tt.Root, tt == t, tt == t)
		}
	}
	return t, nil
}

// rewriter rewrites the nodes of one template. known is template data of an
// empty event: a chain that reaches a non-nil value in it always exists.
type rewriter struct{ known map[string]any }

// list rewrites a list of nodes; dotIsRoot and dollarIsRoot say whether dot
// and $ are the template data there.
func (rw rewriter) list(l *parse.ListNode, dotIsRoot, dollarIsRoot bool) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.ActionNode:
			rw.pipe(n.Pipe, len(n.Pipe.Decl) == 0, dotIsRoot, dollarIsRoot)
		case *parse.IfNode:
			rw.branch(&n.BranchNode, false, dotIsRoot, dollarIsRoot)
		case *parse.RangeNode:
			rw.branch(&n.BranchNode, true, dotIsRoot, dollarIsRoot)
		case *parse.WithNode:
			rw.branch(&n.BranchNode, true, dotIsRoot, dollarIsRoot)
		case *parse.TemplateNode:
			rw.pipe(n.Pipe, false, dotIsRoot, dollarIsRoot)
		}
	}
}

// branch rewrites an if, range or with; the last two change dot in their
// body but not in their else.
func (rw rewriter) branch(b *parse.BranchNode, movesDot, dotIsRoot, dollarIsRoot bool) {
	rw.pipe(b.Pipe, false, dotIsRoot, dollarIsRoot)
	rw.list(b.List, dotIsRoot && !movesDot, dollarIsRoot)
	rw.list(b.ElseList, dotIsRoot, dollarIsRoot)
}

// pipe rewrites the chains of p that may miss; when p prints, a value that
// may be missing goes through textFunc.
func (rw rewriter) pipe(p *parse.PipeNode, prints, dotIsRoot, dollarIsRoot bool) {
	if p == nil || len(p.Cmds) == 0 {
		return
	}
	for i, cmd := range p.Cmds {
		for j, arg := range cmd.Args {
			inner := arg
			if c, ok := arg.(*parse.ChainNode); ok {
				inner = c.Node
			}
			if pp, ok := inner.(*parse.PipeNode); ok {
				rw.pipe(pp, false, dotIsRoot, dollarIsRoot)
			}
			recv, path, present, safe := rw.chain(arg, dotIsRoot, dollarIsRoot)
			if path == "" || (j == 0 && (len(cmd.Args) > 1 || i > 0)) {
				// Not a chain, or a method called with arguments or given a
				// piped value.
				continue
			}
			fn := fieldFunc
			if prints && j == 0 && len(p.Cmds) == 1 {
				if present {
					continue
				}
				fn, prints = textFunc, false
			} else if safe {
				continue
			}
			call := []parse.Node{parse.NewIdentifier(fn).SetPos(arg.Position()),
				&parse.StringNode{NodeType: parse.NodeString, Pos: arg.Position(), Quoted: strconv.Quote(path), Text: path}, recv}
			if j == 0 {
				cmd.Args = call
				continue
			}
			cmd.Args[j] = &parse.PipeNode{NodeType: parse.NodePipe, Pos: arg.Position(),
				Cmds: []*parse.CommandNode{{NodeType: parse.NodeCommand, Pos: arg.Position(), Args: call}}}
		}
	}
	if prints && rw.mayMiss(p.Cmds[len(p.Cmds)-1], dotIsRoot, dollarIsRoot) {
		last := p.Cmds[len(p.Cmds)-1]
		p.Cmds = append(p.Cmds, &parse.CommandNode{NodeType: parse.NodeCommand, Pos: last.Pos, Args: []parse.Node{
			parse.NewIdentifier(textFunc).SetPos(last.Pos),
			&parse.StringNode{NodeType: parse.NodeString, Pos: last.Pos, Quoted: `""`}}})
	}
}

// mayMiss reports whether the last command of a printing pipeline may yield
// no value.
func (rw rewriter) mayMiss(cmd *parse.CommandNode, dotIsRoot, dollarIsRoot bool) bool {
	switch n := cmd.Args[0].(type) {
	case *parse.DotNode:
		return false // the data, or a with or range element
	case *parse.IdentifierNode:
		switch n.Ident {
		case "join", "execCommand", "default", "uaFamily", "elapsed", "printf", "print", "println", "len", "html", "js", "urlquery":
			return false // a string, or the non-empty default
		default:
			if neverMissing[n.Ident] {
				return false // a helper's string, bool or list
			}
		}
	case *parse.VariableNode:
		if len(n.Ident) == 1 && len(cmd.Args) == 1 {
			return n.Ident[0] != "$" // $ is the data; another variable may hold no value
		}
	case *parse.FieldNode:
		if len(cmd.Args) > 1 {
			// A method with arguments (.first.Format "15:04") of a value
			// that is always there.
			return !dotIsRoot || !rw.has(n.Ident[:len(n.Ident)-1])
		}
	}
	if len(cmd.Args) == 1 {
		if _, path, present, _ := rw.chain(cmd.Args[0], dotIsRoot, dollarIsRoot); path != "" {
			return !present
		}
	}
	return true
}

// chain returns the receiver and the dot-joined field names of a field
// chain (an empty path when n is not one). present says that templateData
// always holds the value; safe, that text/template's own evaluation cannot
// fail on it, because all but its last field are present: a missing last
// field is then no value, which only printing shows wrongly.
func (rw rewriter) chain(n parse.Node, dotIsRoot, dollarIsRoot bool) (recv parse.Node, path string, present, safe bool) {
	var fields []string
	root := false
	switch n := n.(type) {
	case *parse.FieldNode:
		recv, fields, root = &parse.DotNode{NodeType: parse.NodeDot, Pos: n.Pos}, n.Ident, dotIsRoot
	case *parse.VariableNode:
		if len(n.Ident) == 1 {
			return nil, "", false, false
		}
		recv = &parse.VariableNode{NodeType: parse.NodeVariable, Pos: n.Pos, Ident: n.Ident[:1]}
		fields, root = n.Ident[1:], n.Ident[0] == "$" && dollarIsRoot
	case *parse.ChainNode:
		recv, fields = n.Node, n.Field
	default:
		return nil, "", false, false
	}
	return recv, strings.Join(fields, "."), root && rw.has(fields), root && rw.has(fields[:len(fields)-1])
}

func (rw rewriter) has(path []string) bool {
	var v any = rw.known
	for _, name := range path {
		m, ok := v.(map[string]any)
		if !ok || m[name] == nil {
			return false
		}
		v = m[name]
	}
	return true
}

// lookupField is fieldFunc: the value at path (dot-separated field names)
// from v, through maps, struct fields and methods without arguments; nil
// for a missing key, a nil on the way or a value without such a field.
// text/template takes a nil result for no value: empty in if, with and
// range.
func lookupField(path string, v any) any { return lookup(v, path) }

// textOf is textFunc: what a printing action shows, the value at path from
// v or "" when there is none.
func textOf(path string, v any) any {
	if v = lookup(v, path); v == nil {
		return ""
	}
	return v
}

func lookup(v any, path string) any {
	for rest := path; rest != "" && v != nil; {
		var name string
		name, rest, _ = strings.Cut(rest, ".")
		switch m := v.(type) {
		case map[string]any:
			v = m[name]
		case map[string]string:
			s, ok := m[name]
			if !ok {
				return nil
			}
			v = s
		default:
			v = reflectField(reflect.ValueOf(v), name)
		}
	}
	return v
}

func reflectField(rv reflect.Value, name string) any {
	if m := rv.MethodByName(name); m.IsValid() {
		if t := m.Type(); t.NumIn() == 0 && t.NumOut() == 1 {
			return m.Call(nil)[0].Interface()
		}
		return nil
	}
	rv = reflect.Indirect(rv)
	switch rv.Kind() {
	case reflect.Map:
		if k := rv.Type().Key(); k.Kind() == reflect.String {
			if x := rv.MapIndex(reflect.ValueOf(name).Convert(k)); x.IsValid() {
				return x.Interface()
			}
		}
	case reflect.Struct:
		if f, ok := rv.Type().FieldByName(name); ok && f.IsExported() {
			return rv.FieldByIndex(f.Index).Interface()
		}
	}
	return nil
}
