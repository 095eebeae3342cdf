package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// policyTestdata holds the rule set, policies and sample of the
// auditpolicy package's tests.
const policyTestdata = "../../policies/auditpolicy/testdata"

// policyRun runs `vigil policy ...` in-process and returns the exit code
// and output, mapping errors to exit codes as run does.
func policyRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, version: "test",
		logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	root := a.rootCmd()
	if c, _, err := root.Find([]string{"policy"}); err != nil || c == root {
		root.AddCommand(a.policyCmd())
	}
	root.SetArgs(append([]string{"policy"}, args...))
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(context.Background())
	var ue usageError
	var ge gateError
	switch {
	case err == nil:
		return exitOK, out.String(), errb.String()
	case errors.As(err, &ge):
		return exitGate, out.String(), errb.String() + err.Error()
	case errors.As(err, &ue):
		return exitUsage, out.String(), errb.String() + err.Error()
	}
	return exitRuntime, out.String(), errb.String() + err.Error()
}

func customArgs(args ...string) []string {
	return append(args, "--no-builtin", "--rules", filepath.Join(policyTestdata, "rules/custom.yaml"))
}

func TestPolicyGenerate_Custom(t *testing.T) {
	code, out, errs := policyRun(t, customArgs("generate")...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want, err := os.ReadFile(filepath.Join(policyTestdata, "golden/custom.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Errorf("stdout differs from the golden policy:\n%s", out)
	}
	for _, w := range []string{"9 detections: 8 covered, 1 degraded on purpose", "degraded manual-token-secret: by design: secrets"} {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}
}

// TestPolicyGenerate_Deploy: the policy in deploy/ is what vigil
// generates from the built-in packs.
func TestPolicyGenerate_Deploy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	code, out, errs := policyRun(t, "generate", "-o", path)
	if code != exitOK || out != "" {
		t.Fatalf("exit %d, stdout %q: %s", code, out, errs)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../deploy/audit-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("deploy/audit-policy.yaml is stale: run go test ./policies/auditpolicy -update")
	}
}

func TestPolicyGenerate_Sample(t *testing.T) {
	code, _, errs := policyRun(t, customArgs("generate", "--sample", filepath.Join(policyTestdata, "sample-run5.jsonl.gz"))...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, w := range []string{"sample: 158 events", "kept:", "saved:", "by policy rule:"} {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}
}

// TestPolicyGenerate_RuleMissesItsFixture: a rule whose audit block does
// not name the subresource its fixture is about fails generation, and no
// policy is written.
func TestPolicyGenerate_RuleMissesItsFixture(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	err := os.WriteFile(rules, []byte(`rules:
  - id: exec-body
    title: Exec with a body
    severity: high
    audit:
      level: Request
      resources: [{group: "", resources: [pods]}]
    match: objectRef.subresource == "exec" && requestObject != nil
    fixtures:
      fire:
        - name: exec
          events:
            - verb: create
              user: {username: mallory}
              objectRef: {resource: pods, subresource: exec, namespace: a, name: b}
              requestObject: {kind: PodExecOptions}
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := policyRun(t, "generate", "--no-builtin", "--rules", rules)
	if code != exitUsage || out != "" {
		t.Fatalf("exit %d, stdout %q, want 2 and nothing", code, out)
	}
	for _, w := range []string{"exec-body", "create pods/exec a/b", "outside the rule's audit block"} {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}
}

func TestPolicyCheck(t *testing.T) {
	policy := func(name string) string { return filepath.Join(policyTestdata, "policies", name) }
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"gke style leaves a high rule blind", customArgs("check", policy("gke-style.yaml")), exitGate,
			[]string{"blind      high     node-credential-from-kubectl", "not recorded: rules[1] sets None",
				"policy check", "node-credential-from-kubectl (high, blind)"}},
		{"docs example passes", customArgs("check", policy("k8s-docs-example.yaml")), exitOK,
			[]string{"degraded   critical cluster-admin-binding", "credentials: rules[5] records configmaps at Request (namespaces kube-system)"}},
		{"docs example fails strict", customArgs("check", "--strict", policy("k8s-docs-example.yaml")), exitGate,
			[]string{"cluster-admin-binding (critical, degraded)", "1 policy rules recording credentials"}},
		{"all metadata", customArgs("check", policy("all-metadata.yaml")), exitOK,
			[]string{"9 detections: 5 covered, 4 degraded, 0 blind"}},
		// Only the capped need of a medium rule is degraded, which does not
		// trip even a strict gate.
		{"generated policy passes strict", customArgs("check", "--strict", filepath.Join(policyTestdata, "golden/custom.yaml")), exitOK,
			[]string{"9 detections: 8 covered, 1 degraded, 0 blind, 0 unverified; 0 policy rules record credentials"}},
		{"empty policy", customArgs("check", policy("empty.yaml")), exitUsage, []string{"it has no rules"}},
		{"mistyped field", customArgs("check", policy("mistyped.yaml")), exitUsage, []string{`unknown field "rules[0].resource" (line 8)`}},
		{"missing file", customArgs("check", policy("nope.yaml")), exitUsage, []string{"read audit policy"}},
		{"no file", customArgs("check"), exitUsage, []string{"takes one policy file"}},
		{"sample", customArgs("check", policy("all-metadata.yaml"), "--sample", filepath.Join(policyTestdata, "sample-run5.jsonl.gz")), exitOK,
			[]string{"sample: 158 events", "kept:   158 events (100.0%)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := policyRun(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errs)
			}
			all := out + errs
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
		})
	}
}
