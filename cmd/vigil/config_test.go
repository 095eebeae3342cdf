package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, dir, "token", []byte("s3cret\n"))
	t.Setenv("VIGIL_TEST_URL", "https://hooks.example/x")
	cases := []struct {
		name, yaml string
		wantErr    []string
		check      func(t *testing.T, c *Config)
	}{
		{"empty", "", nil, func(t *testing.T, c *Config) {
			if c.lateness().String() != "5m0s" {
				t.Errorf("default lateness %s", c.lateness())
			}
		}},
		{"values", "cluster: prod\ndetect: {workers: 3, lateness: 90s, max_keys_per_rule: 10}\n", nil, func(t *testing.T, c *Config) {
			if c.Cluster != "prod" || c.Detect.Workers != 3 || c.lateness().String() != "1m30s" || c.Detect.MaxKeysPerRule != 10 {
				t.Errorf("got %+v", c)
			}
		}},
		{"secrets from env and file", "cluster: \"${env:VIGIL_TEST_URL} ${file:" + secret + "}\"\n", nil, func(t *testing.T, c *Config) {
			if c.Cluster != "https://hooks.example/x s3cret" {
				t.Errorf("expanded to %q", c.Cluster)
			}
		}},
		{"list extend and replace", "lists: {a: [x], b: {replace: true, items: [y]}}\n", nil, func(t *testing.T, c *Config) {
			if !slices.Equal(c.Lists["a"].Items, []string{"x"}) || c.Lists["a"].Replace || !c.Lists["b"].Replace {
				t.Errorf("lists %+v", c.Lists)
			}
		}},
		{"unknown key", "clustre: prod\n", []string{"line 1", "clustre"}, nil},
		{"missing env", "cluster: ${env:VIGIL_TEST_NOPE}\n", []string{"line 1", "VIGIL_TEST_NOPE is not set"}, nil},
		{"missing file", "cluster: ${file:/nonexistent/vigil}\n", []string{"line 1", "read secret file"}, nil},
		{"negative workers", "detect: {workers: -1}\n", []string{"detect.workers"}, nil},
		{"bad duration", "detect: {lateness: soon}\n", []string{"bad duration"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vigil.yaml")
			if err := os.WriteFile(path, []byte(c.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadConfig(path)
			if len(c.wantErr) > 0 {
				var ue usageError
				if err == nil || !errors.As(err, &ue) {
					t.Fatalf("want a usage error, got %v", err)
				}
				for _, w := range c.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error leaks a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, cfg)
		})
	}
}

func TestRuleFlags_Tuning(t *testing.T) {
	cfg := writeFile(t, t.TempDir(), "vigil.yaml", []byte(`
overrides:
  pod-exec: {severity: critical}
  forbidden-burst-user: {count: 2}
rules: {disable: [secret-read]}
`))
	f := ruleFlags{config: cfg}
	_, rs, err := f.ruleSet()
	if err != nil {
		t.Fatal(err)
	}
	if r := rs.Rule("pod-exec"); r == nil || r.Spec.Severity.String() != "critical" {
		t.Errorf("pod-exec severity not overridden")
	}
	if r := rs.Rule("forbidden-burst-user"); r == nil || r.Spec.Window.Count != 2 {
		t.Errorf("forbidden-burst-user count not overridden")
	}
	if rs.Rule("secret-read") != nil {
		t.Errorf("secret-read not disabled")
	}
	bad := writeFile(t, t.TempDir(), "bad.yaml", []byte("overrides: {no-such-rule: {enabled: false}}\n"))
	f = ruleFlags{config: bad}
	var ue usageError
	if _, _, err := f.ruleSet(); err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "overrides.no-such-rule: no such rule") {
		t.Errorf("unknown override: %v", err)
	}
}

// TestLoadConfig_SectionLines: errors in the sections decoded later (sinks,
// routes) name the lines of the file, secrets and comments notwithstanding.
func TestLoadConfig_SectionLines(t *testing.T) {
	t.Setenv("VIGIL_TEST_TOKEN", "t0ken")
	path := writeFile(t, t.TempDir(), "vigil.yaml", []byte(`# vigil

cluster: "${env:VIGIL_TEST_TOKEN}"


sinks:
- {name: out, type: stdout}
- name: siem
  type: webhook
  urll: https://siem.example/intake

serve:
  path: /audit
  drain_timout: 10s
queue:
  retention: 1x
`))
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster != "t0ken" {
		t.Errorf("cluster %q", cfg.Cluster)
	}
	_, err = cfg.sinkConfig()
	if err == nil || !strings.Contains(err.Error(), "sinks[1].urll: unknown field (line 10)") {
		t.Errorf("sink error %v, want sinks[1].urll at line 10", err)
	}
	_, err = serveConfig(cfg)
	for _, want := range []string{"serve.drain_timout: unknown field (line 14)", "line 16: bad duration"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("serve error %v, want %q", err, want)
		}
	}
}
