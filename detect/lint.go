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
// RequestResponse), declares the resources it reads, and ships fixtures that
// both fire it and keep it quiet.
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
	}
	return out
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
