package sinks_test

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks"
	"github.com/vigil-k8s/vigil/sinks/alertmanager"
	"github.com/vigil-k8s/vigil/sinks/file"
	"github.com/vigil-k8s/vigil/sinks/webhook"
)

func decode(t *testing.T, doc string) (sinks.Config, error) {
	t.Helper()
	var root struct {
		Sinks  yaml.Node `yaml:"sinks"`
		Routes yaml.Node `yaml:"routes"`
	}
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		t.Fatal(err)
	}
	return sinks.DecodeConfig(&root.Sinks, &root.Routes)
}

func TestDecodeConfig(t *testing.T) {
	cfg, err := decode(t, `
sinks:
  - {name: sec, type: alertmanager, url: "http://am:9093", min_severity: high}
  - name: hook
    type: webhook
    url: https://siem.example/intake
    batch: true
    hmac_secret: k
    headers: {X-Tenant: blue}
    exclude: {tags: ["noise.*"]}
    retry: {initial: 1s, max: 30s}
  - {name: out, type: stdout}
routes:
  - {namespaces: ["team-a*"], sinks: [hook]}
  - {default: true, sinks: [sec]}
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Sinks) != 3 {
		t.Fatalf("decoded %+v", cfg)
	}
	am, _ := cfg.Sinks[0].Settings.(*alertmanager.Config)
	hook, _ := cfg.Sinks[1].Settings.(*webhook.Config)
	out, _ := cfg.Sinks[2].Settings.(*file.Config)
	if am == nil || am.URL != "http://am:9093" || cfg.Sinks[0].MinSeverity != detect.SeverityHigh ||
		hook == nil || !hook.Batch || hook.Headers["X-Tenant"] != "blue" ||
		cfg.Sinks[1].Retry.Max.D().Seconds() != 30 || cfg.Sinks[1].Exclude.Tags[0] != "noise.*" || out == nil {
		t.Errorf("decoded %+v", cfg)
	}
	if len(cfg.Routes) != 2 || !cfg.Routes[1].Default {
		t.Errorf("routes %+v", cfg.Routes)
	}
	empty, err := sinks.DecodeConfig(nil, &yaml.Node{})
	if err != nil || len(empty.Sinks) != 0 {
		t.Errorf("empty sections: %v %+v", err, empty)
	}
}

func TestDecodeConfig_errors(t *testing.T) {
	_, err := decode(t, `
sinks:
  - {name: a, type: webhook}
  - {name: b, type: slack, url: "https://hooks.example/x", colour: red}
  - {name: a, type: pager}
  - {type: kafka, brokers: [k:9092], topic: t, batch_bytes: 5000000}
  - {name: "bad name", type: stdout, min_severity: urgent}
  - {name: c, type: alertmanager, urls: ["ftp://x"], retry: {initail: 1s}}
routes:
  - {namespaces: ["[x"], sinks: [zzz]}
`)
	if err == nil {
		t.Fatal("no error")
	}
	// Decoding errors come first; validation runs on a config that decodes.
	for _, want := range []string{
		"sinks[1].colour: unknown field (line 4)",
		`sinks[2].type: unknown sink type "pager"`,
		`sinks[4]: line 7: unknown severity "urgent"`,
		"sinks[5].retry.initail: unknown field",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// Errors found after decoding: the second pass.
	_, err = decode(t, `
sinks:
  - {name: a, type: webhook}
  - {type: kafka, brokers: [k], topic: t, batch_bytes: 5000000}
  - {name: a, type: stdout}
  - {name: c, type: alertmanager, urls: ["ftp://x"]}
routes:
  - {namespaces: ["[x"], sinks: [zzz]}
`)
	for _, want := range []string{
		"sinks[0].url: required",
		"sinks[1].name: required",
		"sinks[1].brokers[0]",
		"sinks[1].batch_bytes",
		`sinks[2].name: "a" is also the name of sinks[0]`,
		"sinks[3].urls[0]: scheme must be http or https",
		"routes[0].namespaces[0]: bad glob",
		`routes[0].sinks[0]: no sink is named "zzz"`,
		"routes: needs exactly one route with default: true",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestConfig_Validate_settings covers configs built in code: settings are
// checked against the type, and absent settings are the type's zero ones.
func TestConfig_Validate_settings(t *testing.T) {
	for _, tc := range []struct {
		name string
		sink sinks.SinkConfig
		want string // "" for valid
	}{
		{"stdout without settings", sinks.SinkConfig{Name: "out", Type: "stdout"}, ""},
		{"file sink", sinks.FileSink("out", "a.jsonl"), ""},
		{"nil pointer", sinks.SinkConfig{Name: "h", Type: "webhook", Settings: (*webhook.Config)(nil)}, "sinks[0].url: required"},
		{"webhook without settings", sinks.SinkConfig{Name: "h", Type: "webhook"}, "sinks[0].url: required"},
		{"settings of another type", sinks.SinkConfig{Name: "h", Type: "webhook", Settings: &file.Config{}},
			`sinks[0].type: webhook sink "h" has settings of type *file.Config, want *webhook.Config`},
		{"no type", sinks.SinkConfig{Name: "h"}, "sinks[0].type: required"},
		{"unknown type", sinks.SinkConfig{Name: "h", Type: "pager"},
			`sinks[0].type: unknown sink type "pager" (want stdout, file, webhook, alertmanager, slack, nats or kafka)`},
		{"common and type errors together", sinks.SinkConfig{Name: "h", Type: "webhook", Delivery: sinks.Delivery{Buffer: -1}},
			"sinks[0].buffer: must not be negative\nsinks[0].url: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := sinks.Config{Sinks: []sinks.SinkConfig{tc.sink}}.Validate()
			if tc.want == "" {
				if err != nil {
					t.Errorf("Validate = %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("Validate = %v\nwant %s", err, tc.want)
			}
		})
	}
}
