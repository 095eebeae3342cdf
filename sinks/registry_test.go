package sinks

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestRegistry_documented: docs/sinks.md has, for every registered type, a
// row of its table of types with the registry's one-line doc and a section
// whose heading names the type, and no row for a type that does not exist.
func TestRegistry_documented(t *testing.T) {
	b, err := os.ReadFile("../docs/sinks.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	headings := map[string]bool{}
	row := regexp.MustCompile("^\\| `([^`]+)` \\| (.*) \\|$")
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		if m := row.FindStringSubmatch(line); m != nil {
			rows[m[1]] = m[2]
		}
		if h, ok := strings.CutPrefix(line, "### "); ok {
			for _, w := range strings.Fields(h) {
				headings[w] = true
			}
		}
	}
	seen := map[string]bool{}
	for _, typ := range registry {
		if seen[typ.name] {
			t.Errorf("type %s is registered twice", typ.name)
		}
		seen[typ.name] = true
		doc, ok := rows[typ.name]
		switch {
		case !ok:
			t.Errorf("docs/sinks.md has no row | `%s` | %s |", typ.name, typ.doc)
		case doc != typ.doc:
			t.Errorf("docs/sinks.md describes %s as %q, the registry as %q", typ.name, doc, typ.doc)
		}
		if !headings[typ.name] {
			t.Errorf("docs/sinks.md has no ### section naming %s", typ.name)
		}
		delete(rows, typ.name)
	}
	for name := range rows {
		t.Errorf("docs/sinks.md lists sink type %s, which is not registered", name)
	}
}
