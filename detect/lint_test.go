package detect

import (
	"strings"
	"testing"
)

func TestLint_Exceptions(t *testing.T) {
	lists := map[string][]string{
		"cp":      {"system:apiserver", "system:node:*", "system:serviceaccount:kube-system:*"},
		"named":   {"system:serviceaccount:kube-system:replicaset-controller", "system:serviceaccount:platform:argocd-*"},
		"tenants": {"team-a"},
	}
	cases := []struct {
		exception string
		want      []string // substrings of the problems, in order; none for a clean exception
	}{
		{`inList(user.username, "cp")`, []string{`entry "system:serviceaccount:kube-system:*" exempts every service account of namespace kube-system`}},
		{`user.username in lists.cp`, []string{`"system:serviceaccount:kube-system:*"`}},
		{`inList(user.username, "named")`, nil},
		{`user.username startsWith "system:serviceaccount:"`, []string{`prefix "system:serviceaccount:" exempts every identity named system:serviceaccount:...`}},
		{`hasAnyPrefix(user.username, "system:node:", "system:serviceaccount:monitoring:")`, []string{`every service account of namespace monitoring`}},
		{`user.username startsWith "system:node:"`, nil},
		{`objectRef.namespace == "kube-system"`, []string{"reads nothing but objectRef.namespace"}},
		{`inList(objectRef.namespace, "tenants")`, []string{"reads nothing but objectRef.namespace"}},
		{`objectRef.namespace == "monitoring" && user.username == "system:serviceaccount:monitoring:prometheus"`, nil},
		{`objectRef.name == "coredns"`, nil},
		{`user.username startsWith "system:serviceaccount:" && verb == "list" && userAgent startsWith "operator/"`, nil},
		{`inList(user.username, "cp") || "system:masters" in user.groups`, []string{`"system:serviceaccount:kube-system:*"`}},
	}
	for _, c := range cases {
		got := lintException(c.exception, lists)
		if len(got) != len(c.want) {
			t.Errorf("%s: %d problems %q, want %d", c.exception, len(got), got, len(c.want))
			continue
		}
		for i, w := range c.want {
			if !strings.Contains(got[i], w) {
				t.Errorf("%s: problem %q lacks %q", c.exception, got[i], w)
			}
		}
	}
}
