package respond

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func decode(t *testing.T, src string) (Config, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return DecodeConfig(&n)
}

func mustDecode(t *testing.T, src string) Config {
	t.Helper()
	cfg, err := decode(t, src)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestDecodeConfig_Valid(t *testing.T) {
	cfg := mustDecode(t, `
journal: /tmp/j.jsonl
max_actions_per_minute: 5
protect: {namespaces: [prod-db], identities: [breakglass], self: {namespace: sec, service_account: vigil-sa}}
rules:
  - name: bindings
    match: {rules: [rbac-*], min_severity: high}
    actions:
      - {type: revoke-binding, enforce: true, rate_limit: {max: 2, per: 10m}}
      - {type: revoke-binding, mode: strip-subject, subjects: ["Group:system:unauth*"]}
  - name: pods
    match: {tags: [T1610], namespaces: [team-*]}
    actions:
      - {type: quarantine-pod, label: example.com/isolated, policy: isolate}
      - {type: webhook, url: "https://soar.example/hook", headers: {Authorization: Bearer x}, hmac_secret: s}
`)
	if cfg.MaxPerMinute != 5 || cfg.Protect.Self.Namespace != "sec" || len(cfg.Rules) != 2 {
		t.Fatalf("decoded %+v", cfg)
	}
	a := cfg.Rules[0].Actions[0]
	if n, per := a.limit(); !a.Enforce || n != 2 || per.Minutes() != 10 {
		t.Errorf("action 0: enforce %v, limit %d per %s", a.Enforce, n, per)
	}
	if p := cfg.Rules[0].Actions[1].Params.(*RevokeParams); p.mode() != ModeStripSubject || p.find() != FindObject {
		t.Errorf("strip params %+v", p)
	}
	if p := cfg.Rules[1].Actions[0].Params.(*QuarantineParams); p.label() != "example.com/isolated" || p.policy() != "isolate" {
		t.Errorf("quarantine params %+v", p)
	}
	if got := strings.Join(cfg.Enabled(), ","); got != "quarantine-pod,revoke-binding,webhook" {
		t.Errorf("Enabled() = %s", got)
	}
	if n, per := cfg.Rules[1].Actions[0].limit(); n != DefaultRateLimitMax || per != DefaultRateLimitPer {
		t.Errorf("default limit %d per %s", n, per)
	}
}

func TestDecodeConfig_Empty(t *testing.T) {
	for _, src := range []string{"", "null", "{}"} {
		cfg, err := decode(t, src)
		if err != nil || len(cfg.Rules) != 0 {
			t.Errorf("%q: %+v, %v", src, cfg, err)
		}
	}
}

func TestDecodeConfig_Errors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"not a mapping", `[a]`, []string{"responses: must be a mapping"}},
		{"unknown top key", `{jornal: x}`, []string{"responses.jornal: unknown field"}},
		{"negative cap", `{max_actions_per_minute: -1}`, []string{"responses.max_actions_per_minute: must not be negative"}},
		{"rules not a list", `{rules: {a: b}}`, []string{"responses.rules: must be a list"}},
		{"missing name and actions", `{rules: [{match: {rules: [x]}}]}`,
			[]string{"responses.rules[0].name: required", "responses.rules[0].actions: required"}},
		{"bad name", `{rules: [{name: "a b", match: {rules: [x]}, actions: [{type: annotate}]}]}`,
			[]string{`responses.rules[0].name: "a b" may hold only`}},
		{"duplicate name", `{rules: [{name: a, match: {rules: [x]}, actions: [{type: annotate}]}, {name: a, match: {rules: [y]}, actions: [{type: annotate}]}]}`,
			[]string{`responses.rules[1].name: "a" is also the name of responses.rules[0]`}},
		{"match everything", `{rules: [{name: a, actions: [{type: annotate}]}]}`,
			[]string{"responses.rules[0].match: needs rules, tags or min_severity"}},
		{"bad glob", `{rules: [{name: a, match: {rules: ["["]}, actions: [{type: annotate}]}]}`,
			[]string{`responses.rules[0].match.rules[0]: bad glob "["`}},
		{"bad severity", `{rules: [{name: a, match: {min_severity: huge}, actions: [{type: annotate}]}]}`,
			[]string{"responses.rules[0]", "unknown severity"}},
		{"unknown match key", `{rules: [{name: a, match: {rule: [x]}, actions: [{type: annotate}]}]}`,
			[]string{"responses.rules[0].match.rule: unknown field"}},
		{"missing type", `{rules: [{name: a, match: {rules: [x]}, actions: [{enforce: true}]}]}`,
			[]string{"responses.rules[0].actions[0].type: required"}},
		{"unknown type", `{rules: [{name: a, match: {rules: [x]}, actions: [{type: nuke}]}]}`,
			[]string{`responses.rules[0].actions[0].type: unknown action "nuke" (want quarantine-pod, scale-to-zero`}},
		{"unknown param", `{rules: [{name: a, match: {rules: [x]}, actions: [{type: cordon-node, label: x}]}]}`,
			[]string{"responses.rules[0].actions[0].label: unknown field"}},
		{"bad rate limit", `{rules: [{name: a, match: {rules: [x]}, actions: [{type: annotate, rate_limit: {max: -2}}]}]}`,
			[]string{"responses.rules[0].actions[0].rate_limit.max: must not be negative"}},
		{"webhook without url", `{rules: [{name: a, match: {rules: [x]}, actions: [{type: webhook}]}]}`,
			[]string{"responses.rules[0].actions[0].url: required"}},
		{"strip without subjects", `{rules: [{name: a, match: {rules: [x]}, actions: [{type: revoke-binding, mode: strip-subject}]}]}`,
			[]string{"responses.rules[0].actions[0].subjects: required with mode strip-subject"}},
		{"bad revoke mode", `{rules: [{name: a, match: {rules: [x]}, actions: [{type: revoke-binding, mode: shred, find: all}]}]}`,
			[]string{`responses.rules[0].actions[0].mode: "shred" is not delete or strip-subject`,
				`responses.rules[0].actions[0].find: "all" is not object or subject`}},
		{"bad label", `{rules: [{name: a, match: {rules: [x]}, actions: [{type: quarantine-pod, label: "bad label"}]}]}`,
			[]string{`responses.rules[0].actions[0].label: "bad label" is not a label key`}},
		{"bad prefix", `{rules: [{name: a, match: {rules: [x]}, actions: [{type: annotate, prefix: "-/"}]}]}`,
			[]string{`responses.rules[0].actions[0].prefix: "-/" does not make annotation keys`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(t, tc.src)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}
