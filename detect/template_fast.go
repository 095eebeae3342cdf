package detect

import (
	"fmt"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// Most output templates are text and fields, with `with`, `if`, join and a
// few helpers: compileFast turns such a template into Go closures that read
// the event and the window directly, which renders without building
// templateData's maps and without reflection. A template with anything
// else (a body, range, a method, a pipeline, a variable) keeps
// text/template. Both render the same text (template_fast_test.go).

// tkind is the type of a template value.
type tkind uint8

const (
	tNone tkind = iota // missing: prints "", false in if and with
	tStr
	tInt
	tStrs
	tTime
	// tRoot is the kind of dot where it is the template data, and
	// tUnknown of a dot whose kind is not known when compiling.
	tRoot
	tUnknown
)

// tval is a template value.
type tval struct {
	kind tkind
	s    string
	i    int
	ss   []string
	t    time.Time
}

// tdata is what a compiled template reads.
type tdata struct {
	ev *ingest.Event
	a  *Alert
	w  *windowResult
}

// tget reads a value; tpart writes its part of the text. dot is the value
// of `.` (the root when it is tNone and root is set).
type (
	tget  func(d *tdata, dot *tval) tval
	tpart func(sb *strings.Builder, d *tdata, dot *tval)
)

// fastTemplate is a compiled output template.
type fastTemplate []tpart

func (t fastTemplate) render(d *tdata) string {
	var sb strings.Builder
	var root tval
	for _, p := range t {
		p(&sb, d, &root)
	}
	return sb.String()
}

// templateFields are the fields of templateData a compiled template reads,
// by path. A path below one of templateKnownMaps that is not here is
// missing, as it is in templateData.
var templateFields = map[string]tget{
	"level":                     str(func(d *tdata) string { return d.ev.Level }),
	"auditID":                   str(func(d *tdata) string { return d.ev.AuditID }),
	"stage":                     str(func(d *tdata) string { return d.ev.Stage }),
	"requestURI":                str(func(d *tdata) string { return d.ev.RequestURI }),
	"verb":                      str(func(d *tdata) string { return d.ev.Verb }),
	"userAgent":                 str(func(d *tdata) string { return d.ev.UserAgent }),
	"cluster":                   str(func(d *tdata) string { return d.ev.Cluster }),
	"sourceIPs":                 strs(func(d *tdata) []string { return d.ev.SourceIPs }),
	"user.username":             str(func(d *tdata) string { return d.ev.User.Username }),
	"user.uid":                  str(func(d *tdata) string { return d.ev.User.UID }),
	"user.groups":               strs(func(d *tdata) []string { return d.ev.User.Groups }),
	"impersonatedUser.username": str(func(d *tdata) string { return d.ev.ImpersonatedUser.Username }),
	"impersonatedUser.groups":   strs(func(d *tdata) []string { return d.ev.ImpersonatedUser.Groups }),
	"objectRef.resource":        str(func(d *tdata) string { return d.ev.ObjectRef.Resource }),
	"objectRef.namespace":       str(func(d *tdata) string { return d.ev.ObjectRef.Namespace }),
	"objectRef.name":            str(func(d *tdata) string { return d.ev.ObjectRef.Name }),
	"objectRef.subresource":     str(func(d *tdata) string { return d.ev.ObjectRef.Subresource }),
	"objectRef.apiGroup":        str(func(d *tdata) string { return d.ev.ObjectRef.APIGroup }),
	"responseStatus.code":       func(d *tdata, _ *tval) tval { return tval{kind: tInt, i: d.ev.ResponseStatus.Code} },
	"responseStatus.reason":     str(func(d *tdata) string { return d.ev.ResponseStatus.Reason }),
	"responseStatus.message":    str(func(d *tdata) string { return d.ev.ResponseStatus.Message }),
	"requestReceivedTimestamp":  tim(func(d *tdata) time.Time { return d.ev.RequestReceivedTimestamp }),
	"execCommand":               str(func(d *tdata) string { return d.a.ExecCommand }),
	"count":                     func(d *tdata, _ *tval) tval { return tval{kind: tInt, i: d.a.Count} },
	"key":                       str(func(d *tdata) string { return d.a.GroupKey }),
	"first":                     tim(func(d *tdata) time.Time { return d.a.FirstTime }),
	"last":                      tim(func(d *tdata) time.Time { return d.a.LastTime }),
	"distinct":                  strs(func(d *tdata) []string { return d.a.Distinct }),
	"auditIDs":                  strs(func(d *tdata) []string { return d.a.AuditIDs }),
	"firstUser":                 str(func(d *tdata) string { return d.w.firstUser() }),
}

// templateKnownMaps are the maps of templateData whose other keys are
// missing.
var templateKnownMaps = map[string]bool{"user": true, "impersonatedUser": true, "objectRef": true, "responseStatus": true}

func str(f func(*tdata) string) tget {
	return func(d *tdata, _ *tval) tval { return tval{kind: tStr, s: f(d)} }
}

func strs(f func(*tdata) []string) tget {
	return func(d *tdata, _ *tval) tval { return tval{kind: tStrs, ss: f(d)} }
}

func tim(f func(*tdata) time.Time) tget {
	return func(d *tdata, _ *tval) tval { return tval{kind: tTime, t: f(d)} }
}

// print writes v as text/template prints it.
func (v *tval) print(sb *strings.Builder) {
	switch v.kind {
	case tStr:
		sb.WriteString(v.s)
	case tInt:
		sb.WriteString(strconv.Itoa(v.i))
	case tStrs:
		fmt.Fprint(sb, v.ss)
	case tTime:
		sb.WriteString(v.t.String())
	}
}

// truth is text/template's truth of v.
func (v *tval) truth() bool {
	switch v.kind {
	case tStr:
		return v.s != ""
	case tInt:
		return v.i != 0
	case tStrs:
		return len(v.ss) > 0
	case tTime:
		return true
	}
	return false
}

// any is v as a helper receives it.
func (v *tval) any() any {
	switch v.kind {
	case tStr:
		return v.s
	case tInt:
		return v.i
	case tStrs:
		return v.ss
	case tTime:
		return v.t
	}
	return nil
}

// compileFast compiles a template's source, or returns nil when it uses
// something only text/template renders.
func compileFast(name, src string, funcs template.FuncMap) fastTemplate {
	t, err := template.New(name).Funcs(funcs).Parse(src)
	if err != nil || len(t.Templates()) != 1 || t.Tree == nil {
		return nil
	}
	parts, ok := fastList(t.Root, tRoot)
	if !ok {
		return nil
	}
	return parts
}

// fastList compiles a list of nodes where dot is of kind dot.
func fastList(l *parse.ListNode, dot tkind) ([]tpart, bool) {
	if l == nil {
		return nil, true
	}
	var out []tpart
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			text := string(n.Text)
			out = append(out, func(sb *strings.Builder, _ *tdata, _ *tval) { sb.WriteString(text) })
		case *parse.ActionNode:
			if len(n.Pipe.Decl) > 0 {
				return nil, false
			}
			get, _, ok := fastPipe(n.Pipe, dot)
			if !ok {
				return nil, false
			}
			out = append(out, func(sb *strings.Builder, d *tdata, dot *tval) {
				v := get(d, dot)
				v.print(sb)
			})
		case *parse.IfNode, *parse.WithNode:
			var b *parse.BranchNode
			with := false
			if w, ok := n.(*parse.WithNode); ok {
				b, with = &w.BranchNode, true
			} else {
				b = &n.(*parse.IfNode).BranchNode
			}
			if len(b.Pipe.Decl) > 0 {
				return nil, false
			}
			cond, kind, ok := fastPipe(b.Pipe, dot)
			if !ok {
				return nil, false
			}
			inner := dot
			if with {
				// In the body the value is there: a field that may be
				// missing is a string when it is.
				inner = kind
				if kind == tNone {
					inner = tUnknown
				}
			}
			then, ok := fastList(b.List, inner)
			if !ok {
				return nil, false
			}
			els, ok := fastList(b.ElseList, dot)
			if !ok {
				return nil, false
			}
			out = append(out, func(sb *strings.Builder, d *tdata, dot *tval) {
				v := cond(d, dot)
				inner := dot
				if with {
					inner = &v
				}
				parts := els
				if v.truth() {
					parts = then
				} else {
					inner = dot
				}
				for _, p := range parts {
					p(sb, d, inner)
				}
			})
		default:
			return nil, false
		}
	}
	return out, true
}

// fastPipe compiles a pipeline of one command: a field, or join,
// execCommand, default or a helper from a string to a string over a field.
// It returns the kind of its value (tNone: a string or nothing).
func fastPipe(p *parse.PipeNode, dot tkind) (tget, tkind, bool) {
	if p == nil || len(p.Cmds) != 1 {
		return nil, 0, false
	}
	args := p.Cmds[0].Args
	if len(args) == 1 {
		return fastArg(args[0], dot)
	}
	id, ok := args[0].(*parse.IdentifierNode)
	if !ok {
		return nil, 0, false
	}
	switch {
	case id.Ident == "join" && len(args) == 3:
		list, kind, ok := fastArg(args[1], dot)
		sep, isStr := args[2].(*parse.StringNode)
		// Anything but a list of strings or nothing fails in text/template,
		// which says so itself.
		if !ok || !isStr || (kind != tStrs && kind != tNone) {
			return nil, 0, false
		}
		return func(d *tdata, dot *tval) tval {
			return tval{kind: tStr, s: strings.Join(list(d, dot).ss, sep.Text)}
		}, tStr, true
	case id.Ident == "default" && len(args) == 3:
		def, isStr := args[1].(*parse.StringNode)
		v, kind, ok := fastArg(args[2], dot)
		if !isStr || !ok || kind == tUnknown {
			return nil, 0, false
		}
		out := kind
		if kind == tNone {
			out = tStr
		}
		return func(d *tdata, dot *tval) tval {
			x := v(d, dot)
			if x.kind == tNone || (x.kind == tStr && x.s == "") {
				return tval{kind: tStr, s: def.Text}
			}
			return x
		}, out, true
	case id.Ident == "execClass" && len(args) == 2:
		v, _, ok := fastArg(args[1], dot)
		if !ok {
			return nil, 0, false
		}
		return func(d *tdata, dot *tval) tval {
			x := v(d, dot)
			return tval{kind: tStr, s: execClassOf(x.any())}
		}, tStr, true
	}
	fn, ok := stringHelpers[id.Ident]
	if !ok || len(args) != 2 {
		return nil, 0, false
	}
	v, kind, ok := fastArg(args[1], dot)
	if !ok || kind != tStr {
		return nil, 0, false
	}
	return func(d *tdata, dot *tval) tval {
		return tval{kind: tStr, s: fn(v(d, dot).s)}
	}, tStr, true
}

// fastArg compiles a field chain from the root ($ or a root dot), or dot
// itself, and returns the kind of its value.
func fastArg(n parse.Node, dot tkind) (tget, tkind, bool) {
	var path []string
	switch n := n.(type) {
	case *parse.DotNode:
		if dot == tRoot {
			return nil, 0, false // the whole data
		}
		return func(_ *tdata, dot *tval) tval { return *dot }, dot, true
	case *parse.FieldNode:
		if dot != tRoot {
			return nil, 0, false // a field of a with's value
		}
		path = n.Ident
	case *parse.VariableNode:
		if len(n.Ident) < 2 || n.Ident[0] != "$" {
			return nil, 0, false
		}
		path = n.Ident[1:]
	default:
		return nil, 0, false
	}
	get, ok := rootField(path)
	if !ok {
		return nil, 0, false
	}
	// The kind of a field is the same for every event; an annotation is
	// a string or nothing (tNone).
	return get, get(&tdata{ev: &ingest.Event{}, a: &Alert{}, w: &windowResult{}}, &tval{}).kind, true
}

// rootField compiles a path from the root of the template data.
func rootField(path []string) (tget, bool) {
	key := strings.Join(path, ".")
	if get, ok := templateFields[key]; ok {
		return get, true
	}
	switch {
	case len(path) == 2 && path[0] == "annotations":
		k := path[1]
		return func(d *tdata, _ *tval) tval {
			v, ok := d.ev.Annotations[k]
			if !ok {
				return tval{}
			}
			return tval{kind: tStr, s: v}
		}, true
	case len(path) == 2 && templateKnownMaps[path[0]]:
		return func(*tdata, *tval) tval { return tval{} }, true
	case len(path) == 1 && !templateTopLevel[path[0]]:
		return func(*tdata, *tval) tval { return tval{} }, true
	}
	return nil, false
}

// templateTopLevel are templateData's keys: any other is missing.
var templateTopLevel = map[string]bool{
	"level": true, "auditID": true, "stage": true, "requestURI": true, "verb": true, "userAgent": true,
	"sourceIPs": true, "cluster": true, "user": true, "impersonatedUser": true, "objectRef": true,
	"responseStatus": true, "annotations": true, "requestReceivedTimestamp": true, "execCommand": true,
	"count": true, "key": true, "first": true, "last": true, "distinct": true, "auditIDs": true,
	"requestObject": true, "responseObject": true, "steps": true, "firstUser": true,
}
