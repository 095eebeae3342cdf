// Package helm tests the vigil chart with Helm's own linter and template
// engine, and checks the hardened pod settings in every mode.
package helm

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"sigs.k8s.io/yaml"

	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
)

const chartDir = "vigil"

// modes are the values of each supported topology; token says the pod
// mounts its service account token (only for response actions).
var modes = []struct {
	name   string
	values string
	token  bool
}{
	{"embedded", ``, false},
	{"embedded with tokens", `
webhook: {tlsSecret: vigil-webhook, tokensSecret: vigil-tokens, cluster: prod}
serviceMonitor: {enabled: true}
config:
  sinks:
    - {name: siem, type: webhook, url: "https://siem.example/hook"}`, false},
	{"nats", `
replicaCount: 3
queue:
  kind: nats
  nats: {url: "nats://nats.nats.svc:4222", credsSecret: vigil-nats-creds, tlsSecret: vigil-nats-tls}
webhook:
  certManager: {enabled: true, issuerRef: {name: internal-ca}}
serviceMonitor: {enabled: true, labels: {release: prometheus}}`, false},
	{"nats without volumes", `
replicaCount: 2
queue: {kind: nats, nats: {url: "nats://nats:4222"}}
webhook: {tlsSecret: vigil-webhook}
persistence: {enabled: false}
networkPolicy: {enabled: false}`, false},
	{"kafka", `
replicaCount: 4
queue:
  kind: kafka
  kafka: {brokers: ["kafka-0.kafka:9093", "kafka-1.kafka:9093"], tlsSecret: vigil-kafka-tls, saslSecret: vigil-kafka-user}
webhook: {tlsSecret: vigil-webhook}`, false},
	{"embedded with responses", `
responses: {enabled: true}
config:
  responses:
    rules:
      - {name: privileged-pods, match: {rules: [pod-privileged]}, actions: [{type: quarantine-pod}]}`, true},
}

func values(t *testing.T, s string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// render renders the chart with the given values, as helm template does.
func render(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	rv, err := util.ToRenderValues(ch, vals, common.ReleaseOptions{Name: "vigil", Namespace: "vigil", IsInstall: true},
		common.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, rv)
}

// objects decodes the rendered manifests.
func objects(t *testing.T, files map[string]string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for name, text := range files {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		dec := k8syaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
		for {
			var obj map[string]any
			err := dec.Decode(&obj)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, text)
			}
			if len(obj) > 0 {
				out = append(out, obj)
			}
		}
	}
	return out
}

func TestChart_Lint(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			l := lint.RunAll(chartDir, values(t, m.values), "vigil")
			for _, msg := range l.Messages {
				if msg.Severity >= support.WarningSev {
					t.Errorf("lint: %s", msg)
				}
			}
		})
	}
}

// TestChart_Hardened checks every pod the chart renders, in every mode:
// non-root, read-only root file system, no privilege escalation, no
// capabilities, the runtime's seccomp profile, no service account token
// unless response actions need it.
func TestChart_Hardened(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			files, err := render(t, values(t, m.values))
			if err != nil {
				t.Fatal(err)
			}
			pods := 0
			for _, obj := range objects(t, files) {
				spec, ok := dig(obj, "spec", "template", "spec").(map[string]any)
				if !ok {
					continue
				}
				pods++
				name := dig(obj, "metadata", "name")
				for _, want := range []struct {
					path []string
					val  any
				}{
					{[]string{"securityContext", "runAsNonRoot"}, true},
					{[]string{"securityContext", "seccompProfile", "type"}, "RuntimeDefault"},
					{[]string{"automountServiceAccountToken"}, m.token},
				} {
					if got := dig(spec, want.path...); got != want.val {
						t.Errorf("%s %s: pod %v = %v, want %v", obj["kind"], name, want.path, got, want.val)
					}
				}
				containers, _ := spec["containers"].([]any)
				inits, _ := spec["initContainers"].([]any)
				for _, c := range slices.Concat(containers, inits) {
					checkContainer(t, c.(map[string]any))
				}
			}
			if pods == 0 {
				t.Fatal("no pod rendered")
			}
		})
	}
}

func checkContainer(t *testing.T, c map[string]any) {
	t.Helper()
	sc, _ := c["securityContext"].(map[string]any)
	for _, want := range []struct {
		key string
		val any
	}{
		{"allowPrivilegeEscalation", false},
		{"readOnlyRootFilesystem", true},
		{"runAsNonRoot", true},
	} {
		if sc[want.key] != want.val {
			t.Errorf("container %s: %s = %v, want %v", c["name"], want.key, sc[want.key], want.val)
		}
	}
	if drop := dig(sc, "capabilities", "drop"); !slices.Equal(anyStrings(drop), []string{"ALL"}) {
		t.Errorf("container %s: capabilities.drop = %v, want [ALL]", c["name"], drop)
	}
	if add := dig(sc, "capabilities", "add"); add != nil {
		t.Errorf("container %s adds capabilities %v", c["name"], add)
	}
}

// TestChart_Modes checks what each mode must render.
func TestChart_Modes(t *testing.T) {
	kinds := func(t *testing.T, vals string) (map[string]map[string]any, string) {
		files, err := render(t, values(t, vals))
		if err != nil {
			t.Fatal(err)
		}
		byKind := map[string]map[string]any{}
		var config string
		for _, obj := range objects(t, files) {
			byKind[obj["kind"].(string)] = obj
			if obj["kind"] == "ConfigMap" {
				config = dig(obj, "data", "config.yaml").(string)
			}
		}
		return byKind, config
	}
	t.Run("embedded", func(t *testing.T) {
		k, config := kinds(t, modes[0].values)
		if r := dig(k["StatefulSet"], "spec", "replicas"); r != float64(1) {
			t.Errorf("replicas %v, want 1", r)
		}
		if k["PodDisruptionBudget"] != nil || k["Certificate"] != nil || k["ServiceMonitor"] != nil {
			t.Error("a single replica without cert-manager or monitoring renders a PDB, Certificate or ServiceMonitor")
		}
		if dig(k["StatefulSet"], "spec", "volumeClaimTemplates") == nil {
			t.Error("the embedded queue has no volume")
		}
		if !strings.Contains(config, "kind: embedded") {
			t.Errorf("config lacks the queue kind:\n%s", config)
		}
	})
	t.Run("nats", func(t *testing.T) {
		k, config := kinds(t, modes[2].values)
		for _, kind := range []string{"PodDisruptionBudget", "Certificate", "ServiceMonitor", "NetworkPolicy"} {
			if k[kind] == nil {
				t.Errorf("no %s", kind)
			}
		}
		for _, want := range []string{"kind: nats", "url: nats://nats.nats.svc:4222", "creds_file: /etc/vigil/nats-creds/nats.creds",
			"cert: /etc/vigil/nats-tls/tls.crt", "tls_cert: /etc/vigil/webhook-tls/tls.crt", "replicas: 3", "partitions: 24"} {
			if !strings.Contains(config, want) {
				t.Errorf("config lacks %q:\n%s", want, config)
			}
		}
		if s := dig(k["Certificate"], "spec", "secretName"); s != "vigil-webhook-tls" {
			t.Errorf("certificate secret %v", s)
		}
	})
	t.Run("kafka", func(t *testing.T) {
		k, config := kinds(t, modes[4].values)
		for _, want := range []string{"kind: kafka", "- kafka-0.kafka:9093", "username: ${env:KAFKA_USERNAME}", "mechanism: scram-sha-512"} {
			if !strings.Contains(config, want) {
				t.Errorf("config lacks %q:\n%s", want, config)
			}
		}
		var env bytes.Buffer
		for _, e := range dig(k["StatefulSet"], "spec", "template", "spec", "containers").([]any)[0].(map[string]any)["env"].([]any) {
			env.WriteString(e.(map[string]any)["name"].(string) + " ")
		}
		if !strings.Contains(env.String(), "KAFKA_PASSWORD") {
			t.Errorf("container env %s lacks the SASL password", env.String())
		}
	})
}

// TestChart_Refuses checks the values the chart refuses, with the reason.
func TestChart_Refuses(t *testing.T) {
	for _, tc := range []struct{ name, values, want string }{
		{"embedded scaled", `replicaCount: 3`, "replicaCount must be 1"},
		{"nats without url", `{queue: {kind: nats}, webhook: {tlsSecret: s}}`, "set queue.nats.url"},
		{"kafka without brokers", `{queue: {kind: kafka}}`, "set queue.kafka.brokers"},
		{"unknown kind", `{queue: {kind: redis}}`, `queue.kind "redis"`},
		{"replicas without a shared certificate", `{replicaCount: 2, queue: {kind: nats, nats: {url: "nats://n:4222"}}}`, "serving certificate"},
		{"embedded without volume", `{persistence: {enabled: false}}`, "persistence.enabled must be true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, values(t, tc.values))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func anyStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

var update = flag.Bool("update", false, "rewrite the golden files")

// TestChart_Config compares the config file each mode renders with its
// golden file; cmd/vigil loads the golden files as vigil serve does.
func TestChart_Config(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			files, err := render(t, values(t, m.values))
			if err != nil {
				t.Fatal(err)
			}
			var config string
			for _, obj := range objects(t, files) {
				if obj["kind"] == "ConfigMap" {
					config = dig(obj, "data", "config.yaml").(string)
				}
			}
			path := filepath.Join("testdata", "config-"+strings.ReplaceAll(m.name, " ", "-")+".yaml")
			if *update {
				if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if config != string(want) {
				t.Errorf("rendered config differs from %s (go test -update):\n%s", path, config)
			}
		})
	}
}

// TestChart_Responses: with responses on, the chart binds its service
// account to what every action needs, the rules of
// deploy/rbac-respond.yaml (which vigil respond rbac --all prints), or to
// the rules given; with them off it grants nothing.
func TestChart_Responses(t *testing.T) {
	shipped := func(t *testing.T) any {
		data, err := os.ReadFile(filepath.Join("..", "rbac-respond.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range objects(t, map[string]string{"rbac-respond.yaml": string(data)}) {
			if obj["kind"] == "ClusterRole" {
				return obj["rules"]
			}
		}
		t.Fatal("deploy/rbac-respond.yaml holds no ClusterRole")
		return nil
	}
	least := `[{apiGroups: [""], resources: [pods], verbs: [get, list, patch]}]`
	for _, tc := range []struct {
		name, values string
		rules        func(t *testing.T) any
	}{
		{"off", ``, nil},
		{"every action", `responses: {enabled: true}`, shipped},
		{"least", `responses: {enabled: true, rules: ` + least + `}`, func(t *testing.T) any {
			var v []any
			if err := yaml.Unmarshal([]byte(least), &v); err != nil {
				t.Fatal(err)
			}
			return v
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, err := render(t, values(t, tc.values))
			if err != nil {
				t.Fatal(err)
			}
			byKind := map[string]map[string]any{}
			for _, obj := range objects(t, files) {
				byKind[obj["kind"].(string)] = obj
			}
			role, binding := byKind["ClusterRole"], byKind["ClusterRoleBinding"]
			if tc.rules == nil {
				if role != nil || binding != nil {
					t.Fatal("responses off, but the chart renders RBAC")
				}
				return
			}
			if role == nil || binding == nil {
				t.Fatal("responses on, but no ClusterRole and ClusterRoleBinding")
			}
			got, _ := yaml.Marshal(role["rules"])
			want, _ := yaml.Marshal(tc.rules(t))
			if !bytes.Equal(got, want) {
				t.Errorf("rules:\n%s\nwant:\n%s", got, want)
			}
			sub := dig(binding, "subjects").([]any)[0].(map[string]any)
			if sub["name"] != dig(byKind["ServiceAccount"], "metadata", "name") || sub["namespace"] != "vigil" ||
				dig(binding, "roleRef", "name") != dig(role, "metadata", "name") {
				t.Errorf("binding %v does not bind the chart's service account to its role", binding)
			}
		})
	}
}
