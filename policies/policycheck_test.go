package policies_test

import (
	"os"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/policies/auditpolicy"
)

// TestPolicyCheck_WorkloadsAtMetadata checks what vigil policy check says
// of the pod-spec rules under the policy the real captures were recorded
// with, which logs pods with bodies and every workload kind at Metadata:
// the author rules are degraded with a reason naming the level, and the
// controller's pod create, which carries the spec, is covered.
func TestPolicyCheck_WorkloadsAtMetadata(t *testing.T) {
	data, err := os.ReadFile("../testdata/real-apiserver/audit-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := auditpolicy.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	_, rs := builtin(t)
	rep, err := auditpolicy.Check(p, rs)
	if err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]auditpolicy.Verdict{}
	for _, v := range rep.Verdicts {
		verdicts[v.Rule] = v
		t.Logf("%-45s %-10s %s", v.Rule, v.Status, strings.Join(v.Reasons, " | "))
	}
	for _, id := range []string{"pod-privileged", "pod-dangerous-capabilities", "pod-host-namespaces", "pod-sensitive-host-path", "pod-command-suspicious"} {
		v := verdicts[id]
		if v.Status != auditpolicy.Degraded {
			t.Errorf("%s: %s, want degraded", id, v.Status)
			continue
		}
		reasons := strings.Join(v.Reasons, "\n")
		if !strings.Contains(reasons, "recorded at Metadata") || !strings.Contains(reasons, "needs Request") {
			t.Errorf("%s: reasons do not say the level: %s", id, reasons)
		}
	}
	if v := verdicts["controller-pod-dangerous-spec"]; v.Status != auditpolicy.Covered {
		t.Errorf("controller-pod-dangerous-spec: %s %v, want covered", v.Status, v.Reasons)
	}
}
