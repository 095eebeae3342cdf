package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// typoConfig names a list, a rule to override and a rule to disable that do
// not exist; each error must name the closest real one.
const typoConfig = `
lists:
  control-plane-users: [system:serviceaccount:platform:argocd-*]
overrides:
  forbidden-burst-by-user: {count: 50}
rules:
  disable: [secret-raed]
`

var typoErrors = []string{
	"lists.control-plane-users: no such list (did you mean control_plane_identities?)",
	"overrides.forbidden-burst-by-user: no such rule (did you mean forbidden-burst-user?)",
	"disable secret-raed: no such rule (did you mean secret-read?)",
}

// ownRules defines a list of its own, which the config may then extend.
const ownRules = `
lists:
  break_glass_users: [breakglass-admin]
rules:
- id: break-glass-used
  title: Break-glass account used
  severity: medium
  audit: {level: Metadata, resources: [{group: "*", resources: ["*"]}]}
  match: user.username in lists.break_glass_users
`

func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	own := writeFile(t, dir, "own.yaml", []byte(ownRules))
	badRule := writeFile(t, dir, "bad.yaml", []byte(`
rules:
- id: broken
  title: broken
  severity: low
  audit: {level: Metadata}
  match: verb ==
`))
	cases := []struct {
		name   string
		config string // "" runs without --config
		args   []string
		code   int
		want   []string // in stdout when code is 0, else in stderr
	}{
		{name: "no config", code: 0, want: []string{"no config file: ok: ", " rules enabled, 0 disabled, 24 lists, 0 sinks"}},
		{name: "tuned", config: `
cluster: prod
rules: {disable: [discovery-sweep]}
lists: {control_plane_identities: ["system:serviceaccount:platform:argocd-*"], trusted_images: {replace: true, items: ["registry.example.com/cni/*"]}}
overrides: {forbidden-burst-user: {count: 50, within: 2m}, secret-read: {severity: info}}
sinks: [{name: out, type: stdout}]
serve: {retry_after: 5s}
queue: {retention: 2h}
`, code: 0, want: []string{": ok: ", " rules enabled, 1 disabled, 24 lists, 1 sinks"}},
		{name: "a list of the user's own rule file", config: "lists: {break_glass_users: [dr-admin]}\n",
			args: []string{"--rules", own}, code: 0, want: []string{": ok: ", "25 lists"}},
		{name: "typos", config: typoConfig, code: 2, want: typoErrors},
		{name: "every stage at once", config: typoConfig + `
serve: {max_body_bytes: -1}
queue: {dedup_max_keys: -1}
sinks: [{name: x, type: pager}]
`, args: []string{"--rules", badRule}, code: 2, want: append([]string{
			"bad.yaml: rule broken: match:",
			"serve: size limits must not be negative",
			"queue: limits must not be negative",
			`sinks[0].type: unknown sink type "pager"`,
		}, typoErrors...)},
		{name: "unknown key", config: "cluster: a\nclustre: b\n", code: 2, want: []string{"line 2: field clustre not found"}},
		{name: "no built-in lists", config: "lists: {control_plane_identities: [x]}\n", args: []string{"--no-builtin"},
			code: 2, want: []string{"lists.control_plane_identities: no such list\n"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"rules", "check"}, c.args...)
			if c.config != "" {
				args = append(args, "--config", writeFile(t, t.TempDir(), "vigil.yaml", []byte(c.config)))
			}
			code, stdout, stderr := vigil(t, "", args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, stdout, stderr)
			}
			out := stderr + "\n"
			if c.code == 0 {
				out = stdout
				if strings.Count(stdout, "\n") != 1 {
					t.Errorf("want one line, got %q", stdout)
				}
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestRulesCheck_ServeAndReplayRefuseTheSameConfig: what rules check
// reports, serve and replay refuse at start with the same errors.
func TestRulesCheck_ServeAndReplayRefuseTheSameConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "vigil.yaml", []byte(typoConfig))
	log := writeFile(t, dir, "audit.log", []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":"2026-01-01T00:00:00Z"}`+"\n"))
	for _, args := range [][]string{
		{"rules", "check", "--config", cfg},
		{"serve", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--insecure-listen", "127.0.0.1:0", "--ops-listen", ""},
		{"replay", "--config", cfg, log},
	} {
		t.Run(args[0], func(t *testing.T) {
			// A serve that started despite the config stops at the deadline
			// and fails the exit code check.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errb strings.Builder
			code := run(ctx, args, strings.NewReader(""), &out, &errb)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\nstderr: %s", code, exitUsage, errb.String())
			}
			for _, w := range typoErrors {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb.String())
				}
			}
		})
	}
}
