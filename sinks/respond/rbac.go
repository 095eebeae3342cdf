package respond

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// RBACName names the ClusterRole and ClusterRoleBinding of responses.
const RBACName = "vigil-respond"

// RBAC returns the least ClusterRole (and a ClusterRoleBinding to the
// service account ns/sa) that the given action types need to run and be
// undone, as a YAML stream. Unknown types are an error.
func RBAC(actions []string, ns, sa string) ([]byte, error) {
	type key struct{ group, resource string }
	verbs := map[key]map[string]bool{}
	for _, name := range actions {
		typ, ok := lookupAction(name)
		if !ok {
			return nil, fmt.Errorf("unknown action %q (want %s)", name, actionNames())
		}
		for _, r := range typ.rules() {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					k := key{g, res}
					if verbs[k] == nil {
						verbs[k] = map[string]bool{}
					}
					for _, v := range r.Verbs {
						verbs[k][v] = true
					}
				}
			}
		}
	}
	// One rule per group and verb set, resources sorted: stable output.
	type ruleKey struct{ group, verbs string }
	grouped := map[ruleKey][]string{}
	for k, vs := range verbs {
		list := make([]string, 0, len(vs))
		for v := range vs {
			list = append(list, v)
		}
		slices.SortFunc(list, compareVerbs)
		rk := ruleKey{k.group, strings.Join(list, ",")}
		grouped[rk] = append(grouped[rk], k.resource)
	}
	rules := make([]rbacv1.PolicyRule, 0, len(grouped))
	for rk, res := range grouped {
		slices.Sort(res)
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{rk.group}, Resources: res, Verbs: strings.Split(rk.verbs, ",")})
	}
	slices.SortFunc(rules, func(a, b rbacv1.PolicyRule) int {
		return cmp.Or(strings.Compare(a.APIGroups[0], b.APIGroups[0]), strings.Compare(a.Resources[0], b.Resources[0]))
	})
	role := rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: RBACName, Labels: map[string]string{"app.kubernetes.io/name": "vigil"}},
		Rules:      rules,
	}
	binding := rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: RBACName, Labels: map[string]string{"app.kubernetes.io/name": "vigil"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: RBACName},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "# Permissions of vigil's responses (vigil respond rbac): %s.\n", strings.Join(actions, ", "))
	if slices.ContainsFunc(actions, func(a string) bool { return a == "revoke-binding" || a == "disable-serviceaccount" }) {
		out.WriteString("# bind: taking a subject out of a binding and recreating one (undo) pass the\n" +
			"# apiserver's escalation check only with bind on the roles they reference.\n")
	}
	for i, obj := range []any{role, binding} {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("encode rbac: %w", err)
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(bytes.ReplaceAll(b, []byte("  creationTimestamp: null\n"), nil))
	}
	return out.Bytes(), nil
}

// AllActions lists every action type.
func AllActions() []string {
	out := make([]string, len(registry))
	for i, t := range registry {
		out[i] = t.name
	}
	return out
}

// compareVerbs orders verbs as people read them: reads, then writes.
func compareVerbs(a, b string) int {
	order := []string{"get", "list", "watch", "create", "update", "patch", "delete", "bind"}
	return cmp.Compare(slices.Index(order, a), slices.Index(order, b))
}
