package main

import (
	"strings"
	"testing"
)

func TestPolicyCheck_Provider(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--provider", "gke"}, 3, "GKE's log does not carry impersonatedUser, which the rule reads"},
		{[]string{"--provider", "eks"}, 0, "docs.aws.amazon.com/eks/latest/best-practices/auditing-and-logging.html"},
		{[]string{"--provider", "aks-admin"}, 3, "secret-read"},
		{[]string{"--provider", "openshift"}, 2, ""},
		{[]string{"--provider", "eks", "policy.yaml"}, 2, ""},
	} {
		code, out, errOut := vigil(t, "", append([]string{"policy", "check"}, c.args...)...)
		if code != c.code || !strings.Contains(out, c.out) {
			t.Errorf("%v: exit %d, stdout %.300q, stderr %q", c.args, code, out, errOut)
		}
	}
}
