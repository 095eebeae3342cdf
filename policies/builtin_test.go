package policies_test

import (
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/policies"
)

func builtin(t *testing.T) (*detect.Catalog, *detect.RuleSet) {
	t.Helper()
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	return cat, rs
}

// TestBuiltin_Fixtures runs every built-in rule's fixtures through the
// engine, as vigil rules test does, and lints the packs.
func TestBuiltin_Fixtures(t *testing.T) {
	cat, rs := builtin(t)
	if n := len(rs.Rules); n < 90 {
		t.Errorf("%d built-in rules enabled, want at least 90", n)
	}
	for _, r := range detect.RunFixtures(rs) {
		if !r.Passed() {
			kind := "quiet"
			if r.Fire {
				kind = "fire"
			}
			t.Errorf("%s (%s) %s case %q:\n%s", r.Rule, r.File, kind, r.Case, r.Diff())
		}
	}
	for _, p := range detect.Lint(cat) {
		t.Errorf("lint: %s", p)
	}
}

// TestBuiltin_Titles keeps the packs readable: every rule has a
// description, MITRE tags and an output template.
func TestBuiltin_Titles(t *testing.T) {
	cat, _ := builtin(t)
	for _, r := range cat.Rules {
		if strings.TrimSpace(r.Description) == "" || r.Output == "" {
			t.Errorf("%s (%s): description and output are required in the built-in packs", r.ID, r.File)
		}
		mitre := false
		for _, tag := range r.Tags {
			mitre = mitre || strings.HasPrefix(tag, "T1")
		}
		if !mitre {
			t.Errorf("%s: no MITRE technique tag", r.ID)
		}
	}
}

// TestBuiltin_Messages renders every fire fixture's alert: no template
// fails, and no message is left with an empty field marker. go test -v
// prints them for review.
func TestBuiltin_Messages(t *testing.T) {
	_, rs := builtin(t)
	for _, r := range detect.RunFixtures(rs) {
		if !r.Fire {
			continue
		}
		for _, a := range r.Alerts {
			if strings.Contains(a.Message, "output template failed") || strings.Contains(a.Message, "<no value>") ||
				strings.Contains(a.Message, "%!") {
				t.Errorf("%s %q: %s", r.Rule, r.Case, a.Message)
			}
			t.Logf("%-45s %s", r.Rule, a.Message)
		}
	}
}
