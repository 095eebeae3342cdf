package sinks_test

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks"
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
	if len(cfg.Sinks) != 3 || cfg.Sinks[0].Alertmanager == nil || cfg.Sinks[0].MinSeverity != detect.SeverityHigh ||
		cfg.Sinks[1].Webhook == nil || !cfg.Sinks[1].Webhook.Batch || cfg.Sinks[1].Webhook.Headers["X-Tenant"] != "blue" ||
		cfg.Sinks[1].Retry.Max.D().Seconds() != 30 || cfg.Sinks[1].Exclude.Tags[0] != "noise.*" || cfg.Sinks[2].File == nil {
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
