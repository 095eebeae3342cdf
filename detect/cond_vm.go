package detect

import (
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

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
		if _, ok := m.(*ast.PointerNode); ok && c.isVar("#") {
			// It may be the element of a quantifier compiled in Go:
			// the VM would not see it.
			free = true
		}
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
