package respond

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

// actionCase is one action run against the real apiserver: set up what the
// alert names, then dry-run, enforce and undo it, and try it on a target
// the guard protects.
type actionCase struct {
	name string
	// action is the action's YAML keys (flow style), enforce aside.
	action string
	// setup creates the objects in ns and returns the alert.
	setup func(t *testing.T, e *clusterEnv, ns string) detect.Alert
	// state summarises what the action changes.
	state func(t *testing.T, e *clusterEnv, ns string) string
	// enforced is the state after the action; target is the record's
	// target after a run (%s stands for the test's namespace).
	enforced, target string
	// protected sets up an alert on a target the guard refuses, and the
	// state check of that target.
	protected func(t *testing.T, e *clusterEnv, ns string) (detect.Alert, func() string)
}

var (
	podSpec    = corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}}
	clusterAdm = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"}
)

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ctxT() context.Context { return context.Background() }

func createPod(t *testing.T, e *clusterEnv, ns, name string, mod func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: podSpec}
	if mod != nil {
		mod(p)
	}
	p, err := e.admin.Core.Pods(ns).Create(ctxT(), p, metav1.CreateOptions{})
	ok(t, err)
	return p
}

func podState(t *testing.T, e *clusterEnv, ns, name string) string {
	p, err := e.admin.Core.Pods(ns).Get(ctxT(), name, metav1.GetOptions{})
	ok(t, err)
	_, err = e.admin.Net.NetworkPolicies(ns).Get(ctxT(), DefaultQuarantinePolicy, metav1.GetOptions{})
	return fmt.Sprintf("label=%q policy=%t", p.Labels[DefaultQuarantineLabel], err == nil)
}

func crbState(t *testing.T, e *clusterEnv, name string) string {
	b, err := e.admin.RBAC.ClusterRoleBindings().Get(ctxT(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "absent"
	}
	ok(t, err)
	return fmt.Sprintf("%s -> %s", b.RoleRef.Name, subjectList(b.Subjects))
}

func rbState(t *testing.T, e *clusterEnv, ns, name string) string {
	b, err := e.admin.RBAC.RoleBindings(ns).Get(ctxT(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "absent"
	}
	ok(t, err)
	return fmt.Sprintf("%s -> %s", b.RoleRef.Name, subjectList(b.Subjects))
}

func createCRB(t *testing.T, e *clusterEnv, name string, role rbacv1.RoleRef, subjects ...rbacv1.Subject) {
	t.Helper()
	_, err := e.admin.RBAC.ClusterRoleBindings().Create(ctxT(), &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"team": "x"}}, RoleRef: role, Subjects: subjects}, metav1.CreateOptions{})
	ok(t, err)
}

func sa(ns, name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
}

func user(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
}

func createSA(t *testing.T, e *clusterEnv, ns, name string) {
	t.Helper()
	_, err := e.admin.Core.ServiceAccounts(ns).Create(ctxT(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	ok(t, err)
}

func nodeState(t *testing.T, e *clusterEnv, name string) string {
	n, err := e.admin.Core.Nodes().Get(ctxT(), name, metav1.GetOptions{})
	ok(t, err)
	return fmt.Sprintf("unschedulable=%t", n.Spec.Unschedulable)
}

var actionCases = []actionCase{
	{
		name: "quarantine-pod", action: "type: quarantine-pod",
		setup: func(t *testing.T, e *clusterEnv, ns string) detect.Alert {
			createPod(t, e, ns, "web", nil)
			return alertOn("exec-credential-access", detect.SeverityHigh, "admin",
				ingest.ObjectRef{Resource: "pods", Subresource: "exec", Namespace: ns, Name: "web", APIVersion: "v1"}, time.Now())
		},
		state:    func(t *testing.T, e *clusterEnv, ns string) string { return podState(t, e, ns, "web") },
		enforced: `label="true" policy=true`, target: "Pod %s/web",
		protected: func(t *testing.T, e *clusterEnv, ns string) (detect.Alert, func() string) {
			createPod(t, e, "kube-system", ns, nil)
			return alertOn("pod-exec", detect.SeverityHigh, "admin", ingest.ObjectRef{Resource: "pods", Namespace: "kube-system", Name: ns}, time.Now()),
				func() string { return podState(t, e, "kube-system", ns) }
		},
	},
	{
		name: "scale-to-zero", action: "type: scale-to-zero",
		setup: func(t *testing.T, e *clusterEnv, ns string) detect.Alert {
			// No controller-manager runs: the test makes the ReplicaSet
			// and the pod a Deployment would have.
			sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}
			tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel.MatchLabels}, Spec: podSpec}
			d, err := e.admin.Apps.Deployments(ns).Create(ctxT(), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api"},
				Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(3)), Selector: sel, Template: tmpl}}, metav1.CreateOptions{})
			ok(t, err)
			rs, err := e.admin.Apps.ReplicaSets(ns).Create(ctxT(), &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "api-7c9",
				OwnerReferences: []metav1.OwnerReference{ownerRef("Deployment", d.Name, d.UID)}},
				Spec: appsv1.ReplicaSetSpec{Replicas: ptr(int32(3)), Selector: sel, Template: tmpl}}, metav1.CreateOptions{})
			ok(t, err)
			createPod(t, e, ns, "api-7c9-x2", func(p *corev1.Pod) {
				p.Labels = sel.MatchLabels
				p.OwnerReferences = []metav1.OwnerReference{ownerRef("ReplicaSet", rs.Name, rs.UID)}
			})
			return alertOn("pod-exec", detect.SeverityMedium, "admin", ingest.ObjectRef{Resource: "pods", Subresource: "exec", Namespace: ns, Name: "api-7c9-x2"}, time.Now())
		},
		state: func(t *testing.T, e *clusterEnv, ns string) string {
			d, err := e.admin.Apps.Deployments(ns).Get(ctxT(), "api", metav1.GetOptions{})
			ok(t, err)
			return fmt.Sprintf("replicas=%d", *d.Spec.Replicas)
		},
		enforced: "replicas=0", target: "Deployment %s/api",
		protected: func(t *testing.T, e *clusterEnv, ns string) (detect.Alert, func() string) {
			createPod(t, e, "vigil", ns, nil)
			return alertOn("pod-exec", detect.SeverityHigh, "admin", ingest.ObjectRef{Resource: "pods", Namespace: "vigil", Name: ns}, time.Now()),
				func() string { return podState(t, e, "vigil", ns) }
		},
	},
	{
		name: "revoke-binding", action: "type: revoke-binding",
		setup: func(t *testing.T, e *clusterEnv, ns string) detect.Alert {
			createCRB(t, e, "rogue-"+ns, clusterAdm, sa(ns, "attacker"))
			return alertOn("rbac-cluster-admin-binding", detect.SeverityCritical, "admin",
				ingest.ObjectRef{Resource: "clusterrolebindings", Name: "rogue-" + ns, APIGroup: groupRBAC, APIVersion: "v1"}, time.Now())
		},
		state:    func(t *testing.T, e *clusterEnv, ns string) string { return crbState(t, e, "rogue-"+ns) },
		enforced: "absent", target: "ClusterRoleBinding rogue-%s",
		protected: func(t *testing.T, e *clusterEnv, ns string) (detect.Alert, func() string) {
			// Only the cluster shows that this binding serves the
			// control plane.
			createCRB(t, e, "kcm-"+ns, clusterAdm, user("system:kube-controller-manager"))
			return alertOn("rbac-cluster-admin-binding", detect.SeverityCritical, "admin",
					ingest.ObjectRef{Resource: "clusterrolebindings", Name: "kcm-" + ns, APIGroup: groupRBAC}, time.Now()),
				func() string { return crbState(t, e, "kcm-"+ns) }
		},
	},
	{
		name: "revoke-binding strip-subject", action: `type: revoke-binding, mode: strip-subject, subjects: ["User:mallory"]`,
		setup: func(t *testing.T, e *clusterEnv, ns string) detect.Alert {
			_, err := e.admin.RBAC.RoleBindings(ns).Create(ctxT(), &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "editors"},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
				Subjects: []rbacv1.Subject{user("alice"), user("mallory")}}, metav1.CreateOptions{})
			ok(t, err)
			return alertOn("rbac-binding-changed", detect.SeverityHigh, "admin",
				ingest.ObjectRef{Resource: "rolebindings", Namespace: ns, Name: "editors", APIGroup: groupRBAC, APIVersion: "v1"}, time.Now())
		},
		state:    func(t *testing.T, e *clusterEnv, ns string) string { return rbState(t, e, ns, "editors") },
		enforced: "edit -> User:alice", target: "RoleBinding %s/editors",
		protected: func(t *testing.T, e *clusterEnv, ns string) (detect.Alert, func() string) {
			return alertOn("rbac-binding-changed", detect.SeverityHigh, "admin",
					ingest.ObjectRef{Resource: "clusterrolebindings", Name: "system:basic-user", APIGroup: groupRBAC}, time.Now()),
				func() string { return crbState(t, e, "system:basic-user") }
		},
	},
	{
		name: "revoke-binding find subject", action: "type: revoke-binding, find: subject",
		setup: func(t *testing.T, e *clusterEnv, ns string) detect.Alert {
			createCRB(t, e, "grant-"+ns, clusterAdm, user("mallory-"+ns), user("ops-"+ns))
			_, err := e.admin.RBAC.RoleBindings(ns).Create(ctxT(), &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "wild"},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"},
				Subjects: []rbacv1.Subject{user("mallory-" + ns)}}, metav1.CreateOptions{})
			ok(t, err)
			return alertOn("grant-then-use", detect.SeverityCritical, "mallory-"+ns, ingest.ObjectRef{Resource: "secrets", APIVersion: "v1"}, time.Now())
		},
		state: func(t *testing.T, e *clusterEnv, ns string) string {
			return crbState(t, e, "grant-"+ns) + "; " + rbState(t, e, ns, "wild")
		},
		enforced: "cluster-admin -> User:ops-%s; admin -> ", target: "User mallory-%s",
		protected: func(t *testing.T, e *clusterEnv, ns string) (detect.Alert, func() string) {
			return alertOn("control-plane-identity-unexpected-client", detect.SeverityHigh, "system:kube-scheduler",
					ingest.ObjectRef{Resource: "secrets", Namespace: "kube-system"}, time.Now()),
				func() string { return crbState(t, e, "system:kube-scheduler") }
		},
	},
	{
		name: "delete-token-secret", action: "type: delete-token-secret",
		setup: func(t *testing.T, e *clusterEnv, ns string) detect.Alert {
			createSA(t, e, ns, "builder")
			_, err := e.admin.Core.Secrets(ns).Create(ctxT(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "builder-token",
				Annotations: map[string]string{corev1.ServiceAccountNameKey: "builder"}},
				Type: corev1.SecretTypeServiceAccountToken, Data: map[string][]byte{"token": []byte("t0k3n")}}, metav1.CreateOptions{})
			ok(t, err)
			_, err = e.admin.Core.Secrets(ns).Create(ctxT(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"},
				Data: map[string][]byte{"password": []byte("x")}}, metav1.CreateOptions{})
			ok(t, err)
			return alertOn("secret-enumeration", detect.SeverityHigh, "system:serviceaccount:"+ns+":builder",
				ingest.ObjectRef{Resource: "secrets", APIVersion: "v1"}, time.Now())
		},
		state: func(t *testing.T, e *clusterEnv, ns string) string {
			l, err := e.admin.Core.Secrets(ns).List(ctxT(), metav1.ListOptions{})
			ok(t, err)
			var names []string
			for _, s := range l.Items {
				names = append(names, s.Name+"="+string(s.Data["token"])+string(s.Data["password"]))
			}
			slices.Sort(names)
			return strings.Join(names, ",")
		},
		enforced: "db=x", target: "ServiceAccount %s/builder",
		protected: func(t *testing.T, e *clusterEnv, ns string) (detect.Alert, func() string) {
			return alertOn("secret-enumeration", detect.SeverityHigh, "system:serviceaccount:kube-system:"+ns,
					ingest.ObjectRef{Resource: "secrets"}, time.Now()),
				func() string { return "unchanged" }
		},
	},
	{
		name: "disable-serviceaccount", action: "type: disable-serviceaccount",
		setup: func(t *testing.T, e *clusterEnv, ns string) detect.Alert {
			createSA(t, e, ns, "deployer")
			createCRB(t, e, "deployer-"+ns, clusterAdm, sa(ns, "deployer"))
			_, err := e.admin.RBAC.RoleBindings(ns).Create(ctxT(), &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "deployer-edit"},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
				Subjects: []rbacv1.Subject{sa(ns, "deployer"), user("alice")}}, metav1.CreateOptions{})
			ok(t, err)
			return alertOn("grant-then-use", detect.SeverityCritical, "system:serviceaccount:"+ns+":deployer",
				ingest.ObjectRef{Resource: "secrets", Namespace: "kube-system", APIVersion: "v1"}, time.Now())
		},
		state: func(t *testing.T, e *clusterEnv, ns string) string {
			s, err := e.admin.Core.ServiceAccounts(ns).Get(ctxT(), "deployer", metav1.GetOptions{})
			ok(t, err)
			_, disabled := s.Annotations[DefaultDisabledAnnotation]
			return fmt.Sprintf("disabled=%t; %s; %s", disabled, crbState(t, e, "deployer-"+ns), rbState(t, e, ns, "deployer-edit"))
		},
		enforced: "disabled=true; cluster-admin -> ; edit -> User:alice", target: "ServiceAccount %s/deployer",
		protected: func(t *testing.T, e *clusterEnv, ns string) (detect.Alert, func() string) {
			return alertOn("grant-then-use", detect.SeverityCritical, "system:serviceaccount:vigil:vigil",
					ingest.ObjectRef{Resource: "secrets"}, time.Now()),
				func() string { return crbState(t, e, RBACName) }
		},
	},
	{
		name: "cordon-node", action: "type: cordon-node",
		setup: func(t *testing.T, e *clusterEnv, ns string) detect.Alert {
			_, err := e.admin.Core.Nodes().Create(ctxT(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-" + ns}}, metav1.CreateOptions{})
			ok(t, err)
			createPod(t, e, ns, "node-shell", func(p *corev1.Pod) { p.Spec.NodeName = "node-" + ns })
			return alertOn("pod-privileged", detect.SeverityHigh, "admin", ingest.ObjectRef{Resource: "pods", Namespace: ns, Name: "node-shell"}, time.Now())
		},
		state:    func(t *testing.T, e *clusterEnv, ns string) string { return nodeState(t, e, "node-"+ns) },
		enforced: "unschedulable=true", target: "Node node-%s",
		protected: func(t *testing.T, e *clusterEnv, ns string) (detect.Alert, func() string) {
			_, err := e.admin.Core.Nodes().Create(ctxT(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp-" + ns,
				Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}}}, metav1.CreateOptions{})
			ok(t, err)
			return alertOn("node-proxy-access", detect.SeverityHigh, "admin", ingest.ObjectRef{Resource: "nodes", Subresource: "proxy", Name: "cp-" + ns}, time.Now()),
				func() string { return nodeState(t, e, "cp-"+ns) }
		},
	},
	{
		name: "annotate", action: "type: annotate",
		setup: func(t *testing.T, e *clusterEnv, ns string) detect.Alert {
			_, err := e.admin.Core.ConfigMaps(ns).Create(ctxT(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg",
				Annotations: map[string]string{DefaultAnnotationPrefix + "alert-rule": "older"}}}, metav1.CreateOptions{})
			ok(t, err)
			return alertOn("configmap-tampered", detect.SeverityMedium, "admin", ingest.ObjectRef{Resource: "configmaps", Namespace: ns, Name: "cfg", APIVersion: "v1"}, time.Now())
		},
		state: func(t *testing.T, e *clusterEnv, ns string) string {
			c, err := e.admin.Core.ConfigMaps(ns).Get(ctxT(), "cfg", metav1.GetOptions{})
			ok(t, err)
			return fmt.Sprintf("rule=%s fingerprint=%t", c.Annotations[DefaultAnnotationPrefix+"alert-rule"],
				c.Annotations[DefaultAnnotationPrefix+"alert-fingerprint"] != "")
		},
		enforced: "rule=configmap-tampered fingerprint=true", target: "ConfigMap %s/cfg",
		protected: func(t *testing.T, e *clusterEnv, ns string) (detect.Alert, func() string) {
			_, err := e.admin.Core.ConfigMaps("kube-system").Create(ctxT(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			ok(t, err)
			return alertOn("configmap-tampered", detect.SeverityMedium, "admin",
					ingest.ObjectRef{Resource: "configmaps", Namespace: "kube-system", Name: ns, APIVersion: "v1"}, time.Now()),
				func() string {
					c, err := e.admin.Core.ConfigMaps("kube-system").Get(ctxT(), ns, metav1.GetOptions{})
					ok(t, err)
					return fmt.Sprint(c.Annotations)
				}
		},
	},
}

func ownerRef(kind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: uid, Controller: ptr(true)}
}

// TestActions runs every action against the real apiserver, acting as a
// service account bound to what vigil respond rbac prints for that action
// alone: a dry-run changes nothing, enforce changes the target, undo puts
// it back, and a protected target is refused.
func TestActions(t *testing.T) {
	e := needCluster(t)
	for i, tc := range actionCases {
		t.Run(tc.name, func(t *testing.T) {
			ns := e.namespace(t, fmt.Sprintf("act-%d", i))
			al := tc.setup(t, e, ns)
			before := tc.state(t, e, ns)
			target := strings.ReplaceAll(tc.target, "%s", ns)
			enforced := strings.ReplaceAll(tc.enforced, "%s", ns)

			// vigil may do what this action needs, and nothing more.
			vc := e.actAs(t, fmt.Sprintf("act-%d", i), []string{strings.Trim(strings.Fields(tc.action)[1], ",")})
			dry, _ := e.responder(t, tc.action, false)
			dry.o.Cluster = vc
			rec := handleOne(t, dry, al)
			if rec.Mode != ModeDryRun || rec.Status != StatusPlanned || rec.Target.String() != target || len(rec.Before) == 0 {
				t.Fatalf("dry-run record %+v, want planned on %s with before", rec, target)
			}
			if got := tc.state(t, e, ns); got != before {
				t.Fatalf("dry-run changed the state: %s, was %s", got, before)
			}

			r, j := e.responder(t, tc.action, true)
			r.o.Cluster = vc
			rec = handleOne(t, r, al)
			if rec.Mode != ModeEnforce || rec.Status != StatusDone || rec.Target.String() != target {
				t.Fatalf("enforce record %+v, want done on %s", rec, target)
			}
			if got := tc.state(t, e, ns); got != enforced {
				t.Fatalf("after enforce: %s, want %s", got, enforced)
			}
			if again := must(r.Handle(ctxT(), al)); len(again) != 0 {
				t.Errorf("the same alert again: %v", summary(again))
			}

			u, err := Undo(ctxT(), vc, j, r.cfg, rec.ID, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if u.Status != StatusUndone || u.Undoes != rec.ID || u.Detail == "" {
				t.Errorf("undo record %+v", u)
			}
			if got := tc.state(t, e, ns); got != before {
				t.Errorf("after undo: %s, want %s", got, before)
			}
			if _, err := Undo(ctxT(), vc, j, r.cfg, rec.ID, time.Now()); err == nil || !strings.Contains(err.Error(), "was undone") {
				t.Errorf("second undo: %v", err)
			}

			pal, pstate := tc.protected(t, e, ns)
			was := pstate()
			rec = handleOne(t, r, pal)
			if rec.Status != StatusRefused || rec.Detail == "" {
				t.Errorf("protected target: %+v, want refused", rec)
			}
			if got := pstate(); got != was {
				t.Errorf("protected target changed: %s, was %s", got, was)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
