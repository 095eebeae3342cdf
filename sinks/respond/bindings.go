package respond

import (
	"context"
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// bindingCopy is what it takes to recreate a RoleBinding or
// ClusterRoleBinding.
type bindingCopy struct {
	Kind        string            `json:"kind"`
	Namespace   string            `json:"namespace,omitempty"`
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	RoleRef     rbacv1.RoleRef    `json:"roleRef"`
	Subjects    []rbacv1.Subject  `json:"subjects,omitempty"`
}

func (b bindingCopy) String() string {
	t := Target{Kind: b.Kind, Namespace: b.Namespace, Name: b.Name}
	return fmt.Sprintf("%s (%s %s to %s)", t, b.RoleRef.Kind, b.RoleRef.Name, subjectList(b.Subjects))
}

// bindingChange is one binding an action deleted or took subjects from.
type bindingChange struct {
	Binding bindingCopy      `json:"binding"`
	Deleted bool             `json:"deleted,omitempty"`
	Removed []rbacv1.Subject `json:"removed,omitempty"`
}

func (c bindingChange) String() string {
	if c.Deleted {
		return "delete " + c.Binding.String()
	}
	return fmt.Sprintf("remove %s from %s", subjectList(c.Removed), c.Binding)
}

func subjectList(ss []rbacv1.Subject) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = subjectString(s)
	}
	return strings.Join(out, ", ")
}

func describeChanges(cs []bindingChange) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.String()
	}
	return strings.Join(out, "; ")
}

func getBinding(ctx context.Context, c *Cluster, kind, ns, name string) (bindingCopy, error) {
	if kind == "ClusterRoleBinding" {
		b, err := c.RBAC.ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return bindingCopy{}, fmt.Errorf("get clusterrolebinding %s: %w", name, err)
		}
		return copyCRB(b), nil
	}
	b, err := c.RBAC.RoleBindings(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return bindingCopy{}, fmt.Errorf("get rolebinding %s/%s: %w", ns, name, err)
	}
	return copyRB(b), nil
}

func copyCRB(b *rbacv1.ClusterRoleBinding) bindingCopy {
	return bindingCopy{Kind: "ClusterRoleBinding", Name: b.Name, Labels: b.Labels, Annotations: b.Annotations,
		RoleRef: b.RoleRef, Subjects: b.Subjects}
}

func copyRB(b *rbacv1.RoleBinding) bindingCopy {
	return bindingCopy{Kind: "RoleBinding", Namespace: b.Namespace, Name: b.Name, Labels: b.Labels,
		Annotations: b.Annotations, RoleRef: b.RoleRef, Subjects: b.Subjects}
}

// bindingsOf lists every binding with a subject equal to s.
func bindingsOf(ctx context.Context, c *Cluster, s rbacv1.Subject) ([]bindingCopy, error) {
	var out []bindingCopy
	crbs, err := c.RBAC.ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list clusterrolebindings: %w", err)
	}
	for i := range crbs.Items {
		if hasSubject(crbs.Items[i].Subjects, s) {
			out = append(out, copyCRB(&crbs.Items[i]))
		}
	}
	rbs, err := c.RBAC.RoleBindings("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list rolebindings: %w", err)
	}
	for i := range rbs.Items {
		if hasSubject(rbs.Items[i].Subjects, s) {
			out = append(out, copyRB(&rbs.Items[i]))
		}
	}
	return out, nil
}

func hasSubject(ss []rbacv1.Subject, s rbacv1.Subject) bool {
	return slices.ContainsFunc(ss, func(x rbacv1.Subject) bool { return sameSubject(x, s) })
}

func sameSubject(a, b rbacv1.Subject) bool {
	return a.Kind == b.Kind && a.Name == b.Name && (a.Kind != rbacv1.ServiceAccountKind || a.Namespace == b.Namespace)
}

// subjectOf is the RBAC subject of a User or ServiceAccount target.
func subjectOf(t Target) rbacv1.Subject {
	if t.Kind == "ServiceAccount" {
		return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: t.Namespace, Name: t.Name}
	}
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: t.Name}
}

// applyChanges deletes or strips each binding. A binding already gone is
// not an error: the change may have been made before a crash.
func applyChanges(ctx context.Context, c *Cluster, cs []bindingChange) error {
	for _, ch := range cs {
		b := ch.Binding
		var err error
		switch {
		case ch.Deleted && b.Kind == "ClusterRoleBinding":
			err = c.RBAC.ClusterRoleBindings().Delete(ctx, b.Name, metav1.DeleteOptions{})
		case ch.Deleted:
			err = c.RBAC.RoleBindings(b.Namespace).Delete(ctx, b.Name, metav1.DeleteOptions{})
		default:
			err = updateSubjects(ctx, c, b, func(ss []rbacv1.Subject) []rbacv1.Subject {
				return slices.DeleteFunc(ss, func(s rbacv1.Subject) bool { return hasSubject(ch.Removed, s) })
			})
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("%s: %w", ch, err)
		}
	}
	return nil
}

// restoreChanges recreates deleted bindings and gives stripped subjects
// back; it reports what it found changed since.
func restoreChanges(ctx context.Context, c *Cluster, cs []bindingChange) (string, error) {
	var notes []string
	for _, ch := range cs {
		b := ch.Binding
		t := Target{Kind: b.Kind, Namespace: b.Namespace, Name: b.Name}
		if ch.Deleted {
			err := createBinding(ctx, c, b)
			switch {
			case apierrors.IsAlreadyExists(err):
				notes = append(notes, t.String()+" exists again: left as is")
			case err != nil:
				return "", fmt.Errorf("recreate %s: %w", t, err)
			default:
				notes = append(notes, "recreated "+t.String())
			}
			continue
		}
		err := updateSubjects(ctx, c, b, func(cur []rbacv1.Subject) []rbacv1.Subject {
			// The recorded order, with subjects added since at the end.
			var out []rbacv1.Subject
			for _, s := range b.Subjects {
				if hasSubject(cur, s) || hasSubject(ch.Removed, s) {
					out = append(out, s)
				}
			}
			for _, s := range cur {
				if !hasSubject(out, s) {
					out = append(out, s)
				}
			}
			return out
		})
		switch {
		case apierrors.IsNotFound(err):
			notes = append(notes, t.String()+" is gone")
		case err != nil:
			return "", fmt.Errorf("give %s back to %s: %w", subjectList(ch.Removed), t, err)
		default:
			notes = append(notes, fmt.Sprintf("gave %s back to %s", subjectList(ch.Removed), t))
		}
	}
	return strings.Join(notes, "; "), nil
}

func createBinding(ctx context.Context, c *Cluster, b bindingCopy) error {
	meta := metav1.ObjectMeta{Name: b.Name, Namespace: b.Namespace, Labels: b.Labels, Annotations: b.Annotations}
	opts := metav1.CreateOptions{FieldManager: FieldManager}
	if b.Kind == "ClusterRoleBinding" {
		_, err := c.RBAC.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta, RoleRef: b.RoleRef, Subjects: b.Subjects}, opts)
		return err
	}
	_, err := c.RBAC.RoleBindings(b.Namespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: b.RoleRef, Subjects: b.Subjects}, opts)
	return err
}

// updateSubjects rewrites a binding's subjects with edit, from a fresh
// read (a conflict is retried by the caller's redelivery).
func updateSubjects(ctx context.Context, c *Cluster, b bindingCopy, edit func([]rbacv1.Subject) []rbacv1.Subject) error {
	opts := metav1.UpdateOptions{FieldManager: FieldManager}
	if b.Kind == "ClusterRoleBinding" {
		cur, err := c.RBAC.ClusterRoleBindings().Get(ctx, b.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Subjects = edit(cur.Subjects)
		_, err = c.RBAC.ClusterRoleBindings().Update(ctx, cur, opts)
		return err
	}
	cur, err := c.RBAC.RoleBindings(b.Namespace).Get(ctx, b.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cur.Subjects = edit(cur.Subjects)
	_, err = c.RBAC.RoleBindings(b.Namespace).Update(ctx, cur, opts)
	return err
}

// bindingRules are the permissions of actions that change bindings.
// Taking a subject out of a binding and recreating one (undo) are checked
// against privilege escalation: vigil needs bind on the roles.
func bindingRules(verbs ...string) []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{groupRBAC}, Resources: []string{"clusterrolebindings", "rolebindings"}, Verbs: verbs},
		{APIGroups: []string{groupRBAC}, Resources: []string{"clusterroles", "roles"}, Verbs: []string{"bind"}},
	}
}
