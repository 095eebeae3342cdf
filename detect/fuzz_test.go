package detect

import (
	"strings"
	"testing"
)

// FuzzRuleFile feeds the rule loader small rule files in the shapes the
// built-in packs use (testdata/fuzz/FuzzRuleFile: lists, fixtures, every
// window kind, the helpers) and their mutations: parsing and compiling must
// never panic, every failure is an error that names the file, and a rule
// set that compiles builds its fixture events. (Whole packs as seeds make
// each run take seconds.)
//
//	go test ./detect -run '^$' -fuzz FuzzRuleFile -fuzztime 60s
func FuzzRuleFile(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseRuleFile("fuzz.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml: ") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		rs, err := Compile(c)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.yaml") {
				t.Fatalf("compile error without the file name: %v", err)
			}
			return
		}
		for _, r := range rs.Rules {
			for _, fx := range append(r.Spec.Fixtures.Fire, r.Spec.Fixtures.Quiet...) {
				FixtureEvents(fx)
			}
		}
		Lint(c)
	})
}
