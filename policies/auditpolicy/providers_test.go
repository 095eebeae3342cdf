package auditpolicy

import (
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/policies"
)

func builtinRuleSet(t *testing.T) *detect.RuleSet {
	t.Helper()
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestCheckProvider_NamesWhatEachPipelineLeavesBlind checks each provider's
// verdicts on the built-in rules against what its documentation says.
func TestCheckProvider_NamesWhatEachPipelineLeavesBlind(t *testing.T) {
	rs := builtinRuleSet(t)
	for _, c := range []struct {
		provider, rule string
		status         Status
		reason         string
	}{
		// The reference policy drops events requests.
		{"eks", "events-deleted", Blind, "sets None"},
		{"gke", "events-deleted", Blind, "sets None"},
		// GKE's LogEntry has no impersonated user nor request URI.
		{"gke", "impersonation-privileged-identity", Blind, "does not carry impersonatedUser"},
		{"gke", "exec-credential-access", Blind, "does not carry requestURI"},
		{"eks", "impersonation-privileged-identity", Covered, ""},
		// Secrets are at Metadata: a rule that needs list bodies is degraded.
		{"gke", "grant-then-use", Degraded, "the rule needs RequestResponse"},
		{"aks", "secret-read", Covered, ""},
		{"aks-admin", "secret-read", Blind, "sets None"},
	} {
		pr, err := LoadProvider(c.provider)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := CheckProvider(pr, rs)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(rep.Verdicts, func(v Verdict) bool { return v.Rule == c.rule })
		if i < 0 {
			t.Fatalf("%s: no verdict for %s", c.provider, c.rule)
		}
		v := rep.Verdicts[i]
		if v.Status != c.status || !strings.Contains(strings.Join(v.Reasons, "; "), c.reason) {
			t.Errorf("%s %s: %s %q, want %s with %q", c.provider, c.rule, v.Status, v.Reasons, c.status, c.reason)
		}
	}
	if _, err := LoadProvider("openshift"); err == nil {
		t.Error("unknown provider accepted")
	}
}

func TestBodyReaders_NamesRulesThatReadTheLostBody(t *testing.T) {
	b := NewBodyReaders(builtinRuleSet(t))
	pod := []byte(`{"auditID":"1","stage":"ResponseComplete","verb":"create","requestURI":"/api/v1/namespaces/a/pods","objectRef":{"resource":"pods","namespace":"a","apiVersion":"v1"},"requestReceivedTimestamp":"2026-01-01T00:00:00Z"}`)
	got := b.Rules(pod)
	if !slices.Contains(got, "pod-privileged") || slices.Contains(got, "secret-read") {
		t.Errorf("rules reading a pod create's body: %v", got)
	}
	if b.Rules([]byte(`{}`)) != nil {
		t.Error("rules named for a non-event")
	}
}
