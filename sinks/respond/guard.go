package respond

import (
	"cmp"
	"fmt"
	"path"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/vigil-k8s/vigil/detect"
)

// ControlPlaneIdentities are the users and groups (globs) whose objects and
// bindings no action touches: the apiserver, controllers, scheduler,
// kube-proxy, nodes, system:masters and kube-system's service accounts.
var ControlPlaneIdentities = []string{
	"system:masters", "system:apiserver", "system:kube-*", "system:nodes", "system:node:*",
	"system:serviceaccount:kube-system:*", "system:serviceaccounts", "system:serviceaccounts:kube-system",
	"system:bootstrappers*", "system:monitoring", "system:volume-scheduler",
}

// alwaysProtected are namespaces no action touches, besides kube-system
// (unless allowed) and vigil's own.
var alwaysProtected = []string{"kube-public", "kube-node-lease"}

// refusal is why a protected target is left alone; it makes a refused
// record.
type refusal struct{ msg string }

func (e *refusal) Error() string { return e.msg }

func refuse(format string, a ...any) error { return &refusal{fmt.Sprintf(format, a...)} }

// Guard decides what actions may touch.
type Guard struct {
	namespaces []string
	identities []string
	selfNS     string
	selfUser   string
}

// NewGuard builds the guard of p: Self defaults to the namespace vigil
// runs in (in a cluster) or "vigil", and the service account "vigil".
func NewGuard(p Protect) *Guard {
	g := &Guard{
		selfNS:     cmp.Or(p.Self.Namespace, inClusterNamespace(), DefaultSelfNamespace),
		identities: append(append([]string{}, ControlPlaneIdentities...), p.Identities...),
	}
	g.selfUser = serviceAccountPrefix + g.selfNS + ":" + cmp.Or(p.Self.ServiceAccount, DefaultServiceAccount)
	g.namespaces = append(append([]string{g.selfNS}, alwaysProtected...), p.Namespaces...)
	if !p.AllowKubeSystem {
		g.namespaces = append(g.namespaces, "kube-system")
	}
	// A binding to the group of vigil's namespace grants vigil.
	g.identities = append(g.identities, g.selfUser, "system:serviceaccounts:"+g.selfNS)
	return g
}

// Actor refuses to act on alerts vigil's own requests raised: its actions
// are audited like any request, and must not feed back.
func (g *Guard) Actor(al *detect.Alert) error {
	if al.User.Username == g.selfUser {
		return refuse("the alert was raised by vigil's own request")
	}
	return nil
}

// Target checks what can be told without the cluster: the namespace, the
// identity of a User or ServiceAccount target and system: RBAC objects.
func (g *Guard) Target(t Target) error {
	if t.Name == "" {
		return nil
	}
	if err := g.Namespace(t.Namespace); err != nil {
		return err
	}
	switch t.Kind {
	case "User", "Group":
		return g.Identity(t.Name)
	case "ServiceAccount":
		return g.Identity(serviceAccountPrefix + t.Namespace + ":" + t.Name)
	case "Namespace":
		return g.Namespace(t.Name)
	}
	if t.APIGroup == groupRBAC || t.Kind == "RoleBinding" || t.Kind == "ClusterRoleBinding" {
		return g.RBACName(t.Name)
	}
	return nil
}

// Namespace refuses protected namespaces.
func (g *Guard) Namespace(ns string) error {
	if ns == "" {
		return nil
	}
	for _, p := range g.namespaces {
		if ok, _ := path.Match(p, ns); ok {
			if ns == g.selfNS {
				return refuse("namespace %s is vigil's own", ns)
			}
			return refuse("namespace %s is protected", ns)
		}
	}
	return nil
}

// Identity refuses control-plane identities, the configured ones and
// vigil's own service account.
func (g *Guard) Identity(name string) error {
	if name == g.selfUser {
		return refuse("%s is vigil's own service account", name)
	}
	for _, p := range g.identities {
		if ok, _ := path.Match(p, name); ok {
			return refuse("%s is a protected identity", name)
		}
	}
	return nil
}

// RBACName refuses the bootstrap roles and bindings (system:*), which the
// apiserver owns and reconciles.
func (g *Guard) RBACName(name string) error {
	if strings.HasPrefix(name, "system:") {
		return refuse("%s is a bootstrap RBAC object of the control plane", name)
	}
	return nil
}

// Subjects refuses when a subject is protected: deleting or changing such
// a binding could take rights from the control plane or from vigil.
func (g *Guard) Subjects(subjects []rbacv1.Subject) error {
	for _, s := range subjects {
		if err := g.Identity(subjectName(s)); err != nil {
			return err
		}
	}
	return nil
}

// subjectName is the identity of a subject as users and groups appear in
// requests: service accounts as system:serviceaccount:NS:NAME.
func subjectName(s rbacv1.Subject) string {
	if s.Kind == rbacv1.ServiceAccountKind {
		return serviceAccountPrefix + s.Namespace + ":" + s.Name
	}
	return s.Name
}

// subjectString is a subject as the strip-subject globs name it:
// User:NAME, Group:NAME or ServiceAccount:NS/NAME.
func subjectString(s rbacv1.Subject) string {
	if s.Kind == rbacv1.ServiceAccountKind {
		return s.Kind + ":" + s.Namespace + "/" + s.Name
	}
	return s.Kind + ":" + s.Name
}
