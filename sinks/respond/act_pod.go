package respond

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"

	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// Defaults of quarantine-pod.
const (
	DefaultQuarantineLabel  = "vigil.dev/quarantine"
	DefaultQuarantinePolicy = "vigil-quarantine"
)

// QuarantineParams are the keys of quarantine-pod.
type QuarantineParams struct {
	FromParams `yaml:",inline"`
	// Label marks quarantined pods with the value "true" (default
	// vigil.dev/quarantine).
	Label string `yaml:"label"`
	// Policy names the deny-all NetworkPolicy of each namespace that
	// selects the label (default vigil-quarantine).
	Policy string `yaml:"policy"`
}

// Validate checks from, the label key and the policy name.
func (p *QuarantineParams) Validate() error {
	if err := p.FromParams.Validate(); err != nil {
		return err
	}
	if p.Label != "" {
		if errs := validation.IsQualifiedName(p.Label); len(errs) > 0 {
			return sinkutil.Fieldf("label", "%q is not a label key: %s", p.Label, errs[0])
		}
	}
	if p.Policy != "" {
		if errs := validation.IsDNS1123Subdomain(p.Policy); len(errs) > 0 {
			return sinkutil.Fieldf("policy", "%q is not an object name: %s", p.Policy, errs[0])
		}
	}
	return nil
}

func (p *QuarantineParams) label() string  { return cmp.Or(p.Label, DefaultQuarantineLabel) }
func (p *QuarantineParams) policy() string { return cmp.Or(p.Policy, DefaultQuarantinePolicy) }

// quarantineBefore is what quarantine-pod changes.
type quarantineBefore struct {
	// Label is the label's value before, nil when it was absent.
	Label *string `json:"label"`
	// PolicyExisted tells whether the namespace had the policy already.
	PolicyExisted bool `json:"policyExisted"`
}

func runQuarantine(ctx context.Context, x *execution) (string, bool, error) {
	p := x.p.(*QuarantineParams)
	t := x.rec.Target
	pods, nps := x.c.Core.Pods(t.Namespace), x.c.Net.NetworkPolicies(t.Namespace)
	var b quarantineBefore
	err := x.state(&b, func() error {
		pod, err := pods.Get(ctx, t.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get pod: %w", err)
		}
		if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
			return refuse("pod %s/%s is a static pod: its node's kubelet owns it", t.Namespace, t.Name)
		}
		if err := x.g.Identity(serviceAccountPrefix + t.Namespace + ":" + pod.Spec.ServiceAccountName); err != nil {
			return err
		}
		if v, ok := pod.Labels[p.label()]; ok {
			b.Label = &v
		}
		_, err = nps.Get(ctx, p.policy(), metav1.GetOptions{})
		switch {
		case err == nil:
			b.PolicyExisted = true
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("get network policy: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	detail := fmt.Sprintf("label %s=true and deny all its traffic with NetworkPolicy %s", p.label(), p.policy())
	changed := b.Label == nil || *b.Label != "true" || !b.PolicyExisted
	if !x.enforce || !changed {
		return detail, changed, nil
	}
	if err := x.begin(ctx); err != nil {
		return "", false, err
	}
	// The policy first: the moment the label lands, the pod is isolated.
	np := networkingv1ac.NetworkPolicy(p.policy(), t.Namespace).
		WithLabels(map[string]string{"app.kubernetes.io/managed-by": FieldManager}).
		WithSpec(networkingv1ac.NetworkPolicySpec().
			WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{p.label(): "true"})).
			WithPolicyTypes(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
	if _, err := nps.Apply(ctx, np, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return "", false, fmt.Errorf("apply network policy: %w", err)
	}
	if err := patchLabels(ctx, x.c, t, map[string]*string{p.label(): ptr("true")}); err != nil {
		return "", false, err
	}
	return detail, true, nil
}

func undoQuarantine(ctx context.Context, u *undoing) (string, error) {
	p := u.p.(*QuarantineParams)
	var b quarantineBefore
	if err := u.before(&b); err != nil {
		return "", err
	}
	t := u.rec.Target
	detail := "removed label " + p.label()
	if b.Label != nil {
		detail = fmt.Sprintf("set label %s back to %q", p.label(), *b.Label)
	}
	if err := patchLabels(ctx, u.c, t, map[string]*string{p.label(): b.Label}); apierrors.IsNotFound(err) {
		detail = "pod is gone"
	} else if err != nil {
		return "", err
	}
	if b.PolicyExisted {
		return detail, nil
	}
	// The policy is shared by the namespace's quarantined pods: it goes
	// with the last of them.
	others, err := u.c.Core.Pods(t.Namespace).List(ctx, metav1.ListOptions{LabelSelector: p.label() + "=true"})
	if err != nil {
		return "", fmt.Errorf("list quarantined pods: %w", err)
	}
	if len(others.Items) > 0 {
		return fmt.Sprintf("%s; NetworkPolicy %s kept for %d other quarantined pods", detail, p.policy(), len(others.Items)), nil
	}
	err = u.c.Net.NetworkPolicies(t.Namespace).Delete(ctx, p.policy(), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("delete network policy: %w", err)
	}
	return detail + "; deleted NetworkPolicy " + p.policy(), nil
}

// patchLabels sets (or, for nil values, removes) labels of a pod with a
// JSON merge patch: it changes those keys and nothing else.
func patchLabels(ctx context.Context, c *Cluster, t Target, labels map[string]*string) error {
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	if err != nil {
		return err
	}
	_, err = c.Core.Pods(t.Namespace).Patch(ctx, t.Name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: FieldManager})
	if err != nil {
		return fmt.Errorf("label pod: %w", err)
	}
	return nil
}

func quarantineRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "patch"}},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "create", "patch", "delete"}},
	}
}

// scaleBefore is what scale-to-zero changes.
type scaleBefore struct {
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	Replicas int32  `json:"replicas"`
	// Pod is the pod the alert named, when the workload was found from it.
	Pod string `json:"pod,omitempty"`
}

func runScale(ctx context.Context, x *execution) (string, bool, error) {
	t := x.rec.Target
	var b scaleBefore
	err := x.state(&b, func() error {
		b.Kind, b.Name = t.Kind, t.Name
		if t.Kind == "Pod" {
			if err := ownerWorkload(ctx, x.c, t, &b); err != nil {
				return err
			}
		}
		s, err := getScale(ctx, x.c, t.Namespace, b.Kind, b.Name)
		if err != nil {
			return err
		}
		b.Replicas = s.Spec.Replicas
		return nil
	})
	if err != nil {
		return "", false, err
	}
	x.rec.Target = Target{Kind: b.Kind, Namespace: t.Namespace, Name: b.Name}
	detail := fmt.Sprintf("scale %s from %d to 0 replicas", x.rec.Target, b.Replicas)
	if b.Pod != "" {
		detail += " (owner of pod " + b.Pod + ")"
	}
	if !x.enforce || b.Replicas == 0 {
		return detail, b.Replicas != 0, nil
	}
	if err := x.begin(ctx); err != nil {
		return "", false, err
	}
	return detail, true, setScale(ctx, x.c, x.rec.Target, 0, -1)
}

func undoScale(ctx context.Context, u *undoing) (string, error) {
	var b scaleBefore
	if err := u.before(&b); err != nil {
		return "", err
	}
	// Someone who scaled it up since knows better than the record.
	if err := setScale(ctx, u.c, u.rec.Target, b.Replicas, 0); err != nil {
		return "", err
	}
	return fmt.Sprintf("scaled %s back to %d replicas", u.rec.Target, b.Replicas), nil
}

// ownerWorkload follows the pod's controller: a ReplicaSet (and its
// Deployment) or a StatefulSet.
func ownerWorkload(ctx context.Context, c *Cluster, t Target, b *scaleBefore) error {
	pod, err := c.Core.Pods(t.Namespace).Get(ctx, t.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get pod: %w", err)
	}
	b.Pod = t.Name
	owner := metav1.GetControllerOf(pod)
	if owner == nil {
		return skip("pod " + t.Namespace + "/" + t.Name + " has no controller to scale (quarantine-pod contains a bare pod)")
	}
	switch owner.Kind {
	case "StatefulSet":
		b.Kind, b.Name = owner.Kind, owner.Name
		return nil
	case "ReplicaSet":
		rs, err := c.Apps.ReplicaSets(t.Namespace).Get(ctx, owner.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get replicaset: %w", err)
		}
		b.Kind, b.Name = "ReplicaSet", rs.Name
		if d := metav1.GetControllerOf(rs); d != nil && d.Kind == "Deployment" {
			b.Kind, b.Name = d.Kind, d.Name
		}
		return nil
	}
	return skip(fmt.Sprintf("pod %s/%s is run by a %s, which does not scale", t.Namespace, t.Name, owner.Kind))
}

func getScale(ctx context.Context, c *Cluster, ns, kind, name string) (*autoscalingv1.Scale, error) {
	var s *autoscalingv1.Scale
	var err error
	switch kind {
	case "Deployment":
		s, err = c.Apps.Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	case "StatefulSet":
		s, err = c.Apps.StatefulSets(ns).GetScale(ctx, name, metav1.GetOptions{})
	case "ReplicaSet":
		s, err = c.Apps.ReplicaSets(ns).GetScale(ctx, name, metav1.GetOptions{})
	default:
		return nil, skip(kind + " does not scale")
	}
	if err != nil {
		return nil, fmt.Errorf("get scale of %s %s/%s: %w", kind, ns, name, err)
	}
	return s, nil
}

// setScale sets the replicas; with from >= 0 only if they are still from.
func setScale(ctx context.Context, c *Cluster, t Target, replicas, from int32) error {
	s, err := getScale(ctx, c, t.Namespace, t.Kind, t.Name)
	if err != nil {
		return err
	}
	if from >= 0 && s.Spec.Replicas != from {
		return fmt.Errorf("%s has %d replicas now, not %d: left as is", t, s.Spec.Replicas, from)
	}
	s.Spec.Replicas = replicas
	switch t.Kind {
	case "Deployment":
		_, err = c.Apps.Deployments(t.Namespace).UpdateScale(ctx, t.Name, s, metav1.UpdateOptions{FieldManager: FieldManager})
	case "StatefulSet":
		_, err = c.Apps.StatefulSets(t.Namespace).UpdateScale(ctx, t.Name, s, metav1.UpdateOptions{FieldManager: FieldManager})
	case "ReplicaSet":
		_, err = c.Apps.ReplicaSets(t.Namespace).UpdateScale(ctx, t.Name, s, metav1.UpdateOptions{FieldManager: FieldManager})
	}
	if err != nil {
		return fmt.Errorf("scale %s: %w", t, err)
	}
	return nil
}

func scaleRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"get"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments/scale", "replicasets/scale", "statefulsets/scale"}, Verbs: []string{"get", "update"}},
	}
}

func ptr[T any](v T) *T { return &v }
