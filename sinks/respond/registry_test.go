package respond

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRegistry_Documented: docs/responses.md has a row for every action in
// its table of actions and in its table of permissions, naming every
// resource and verb the action's RBAC has, and a row for every status.
func TestRegistry_Documented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "responses.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "| `"); ok {
			name, _, _ = strings.Cut(name, "`")
			rows[name] = append(rows[name], line)
		}
	}
	for _, typ := range registry {
		r := rows[typ.name]
		if len(r) != 2 {
			t.Errorf("%s has %d rows in docs/responses.md, want 2 (actions, permissions)", typ.name, len(r))
			continue
		}
		for _, rule := range typ.rules() {
			for _, s := range append(append([]string{}, rule.Resources...), rule.Verbs...) {
				if !strings.Contains(r[1], s) {
					t.Errorf("the permissions row of %s lacks %q: %s", typ.name, s, r[1])
				}
			}
		}
	}
	statuses := []string{StatusPlanned, StatusStarted, StatusDone, StatusUnchanged, StatusRefused,
		StatusRateLimited, StatusSkipped, StatusFailed, StatusUndone}
	for _, st := range statuses {
		if len(rows[st]) != 1 {
			t.Errorf("status %s has %d rows in docs/responses.md, want 1", st, len(rows[st]))
		}
	}
	for name := range rows {
		if _, ok := lookupAction(name); !ok && !slices.Contains(statuses, name) {
			t.Errorf("docs/responses.md has rows for %s, which is no action or status", name)
		}
	}
}
