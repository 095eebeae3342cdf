package detect

import (
	"slices"
	"strings"
	"testing"
)

const tuneRules = `
lists:
  control_plane_identities: [system:apiserver]
  powerful_roles: [cluster-admin]
  trusted_images: []
rules:
- id: forbidden-burst-user
  title: burst
  severity: high
  audit: {level: Metadata}
  match: responseStatus.code == 403
  window: {kind: threshold, by: [user.username], within: 1m, count: 3}
- id: secret-read
  title: secret read
  severity: low
  audit: {level: Metadata, resources: [{group: "", resources: [secrets]}]}
  match: objectRef.resource == "secrets" && !inList(user.username, "control_plane_identities")
`

func TestCatalog_Tune(t *testing.T) {
	count := 50
	cases := []struct {
		name      string
		lists     map[string]ListOverride
		overrides map[string]Override
		disable   []string
		wantErr   []string
		check     func(t *testing.T, c *Catalog)
	}{
		{name: "extend and replace lists", lists: map[string]ListOverride{
			"control_plane_identities": {Items: []string{"system:serviceaccount:platform:argocd-*"}},
			"powerful_roles":           {Items: []string{"admin"}, Replace: true},
			"trusted_images":           {Items: []string{"registry.example.com/cni/*"}},
		}, check: func(t *testing.T, c *Catalog) {
			if got := c.Lists["trusted_images"]; !slices.Equal(got, []string{"registry.example.com/cni/*"}) {
				t.Errorf("extended empty list %v", got)
			}
			if got := c.Lists["control_plane_identities"]; !slices.Equal(got, []string{"system:apiserver", "system:serviceaccount:platform:argocd-*"}) {
				t.Errorf("extended list %v", got)
			}
			if got := c.Lists["powerful_roles"]; !slices.Equal(got, []string{"admin"}) {
				t.Errorf("replaced list %v", got)
			}
		}},
		{name: "override and disable", overrides: map[string]Override{"forbidden-burst-user": {Count: &count}},
			disable: []string{"secret-read"}, check: func(t *testing.T, c *Catalog) {
				if c.Rules[0].Window.Count != 50 || c.Rules[1].IsEnabled() {
					t.Errorf("count %d, secret-read enabled %t", c.Rules[0].Window.Count, c.Rules[1].IsEnabled())
				}
			}},
		{name: "unknown list", lists: map[string]ListOverride{"control-plane-users": {Items: []string{"x"}}},
			wantErr: []string{"lists.control-plane-users: no such list (did you mean control_plane_identities?)"},
			check: func(t *testing.T, c *Catalog) {
				if _, ok := c.Lists["control-plane-users"]; ok {
					t.Error("an unknown list was created")
				}
			}},
		{name: "unknown override", overrides: map[string]Override{"forbidden-burst-by-user": {Count: &count}},
			wantErr: []string{"overrides.forbidden-burst-by-user: no such rule (did you mean forbidden-burst-user?)"}},
		{name: "unknown disable", disable: []string{"secret_reed"},
			wantErr: []string{"disable secret_reed: no such rule (did you mean secret-read?)"}},
		{name: "every error at once",
			lists:     map[string]ListOverride{"powerful-role": {}, "control_plane_identity": {}},
			overrides: map[string]Override{"secret-raed": {}}, disable: []string{"forbiden-burst-user"},
			wantErr: []string{
				"lists.control_plane_identity: no such list (did you mean control_plane_identities?)",
				"lists.powerful-role: no such list (did you mean powerful_roles?)",
				"overrides.secret-raed: no such rule (did you mean secret-read?)",
				"disable forbiden-burst-user: no such rule (did you mean forbidden-burst-user?)",
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cat, err := ParseRuleFile("test.yaml", []byte(tuneRules))
			if err != nil {
				t.Fatal(err)
			}
			err = cat.Tune(c.lists, c.overrides, c.disable)
			switch {
			case len(c.wantErr) == 0 && err != nil:
				t.Fatalf("Tune: %v", err)
			case len(c.wantErr) > 0 && err == nil:
				t.Fatalf("Tune: no error, want %q", c.wantErr)
			case len(c.wantErr) > 0:
				if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, c.wantErr) {
					t.Errorf("errors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.wantErr, "\n"))
				}
			}
			if c.check != nil {
				c.check(t, cat)
			}
		})
	}
}

// TestCatalog_TuneListOfUserRuleFile: a list a user's rule file defines is
// a list the config can extend, like the packs' lists.
func TestCatalog_TuneListOfUserRuleFile(t *testing.T) {
	cat, err := ParseRuleFile("builtin.yaml", []byte(tuneRules))
	if err != nil {
		t.Fatal(err)
	}
	own, err := ParseRuleFile("own.yaml", []byte(`
lists:
  break_glass_users: [oncall-admin]
rules:
- id: break-glass-used
  title: Break-glass account used
  severity: medium
  audit: {level: Metadata}
  match: user.username in lists.break_glass_users
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.Merge(own); err != nil {
		t.Fatal(err)
	}
	if err := cat.Tune(map[string]ListOverride{"break_glass_users": {Items: []string{"dr-admin"}}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	rs, err := Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]int{"oncall-admin": 1, "dr-admin": 1, "alice": 0} {
		n, err := CountAlerts(rs, "break-glass-used", [][]byte{ev("a", 0, user, "get", "pods", 200)})
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s: %d alerts, want %d", user, n, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"secret-read", "secret-read", 0},
		{"secret-raed", "secret-read", 2},
		{"kitten", "sitting", 3},
		{"forbidden-burst-by-user", "forbidden-burst-user", 3},
	}
	for _, c := range cases {
		if got := editDistance(c.a, c.b); got != c.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	if got := suggest("x", nil); got != "" {
		t.Errorf("suggest with no candidates = %q", got)
	}
}
