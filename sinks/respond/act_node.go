package respond

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"

	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// controlPlaneNodeLabels mark nodes that run the control plane.
var controlPlaneNodeLabels = []string{"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"}

type cordonBefore struct {
	Node          string `json:"node"`
	Unschedulable bool   `json:"unschedulable"`
	// Pod is the pod the alert named, when the node was found from it.
	Pod string `json:"pod,omitempty"`
}

func runCordon(ctx context.Context, x *execution) (string, bool, error) {
	t := x.rec.Target
	var b cordonBefore
	err := x.state(&b, func() error {
		b.Node = t.Name
		if t.Kind == "Pod" {
			pod, err := x.c.Core.Pods(t.Namespace).Get(ctx, t.Name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("get pod: %w", err)
			}
			if pod.Spec.NodeName == "" {
				return skip("pod " + t.Namespace + "/" + t.Name + " is not on a node")
			}
			b.Node, b.Pod = pod.Spec.NodeName, t.Namespace+"/"+t.Name
		}
		node, err := x.c.Core.Nodes().Get(ctx, b.Node, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get node: %w", err)
		}
		for _, l := range controlPlaneNodeLabels {
			if _, ok := node.Labels[l]; ok {
				return refuse("node %s runs the control plane (%s)", node.Name, l)
			}
		}
		b.Unschedulable = node.Spec.Unschedulable
		return nil
	})
	if err != nil {
		return "", false, err
	}
	x.rec.Target = Target{Kind: "Node", Name: b.Node}
	detail := "cordon node " + b.Node
	if b.Pod != "" {
		detail += " (node of pod " + b.Pod + ")"
	}
	if !x.enforce || b.Unschedulable {
		return detail, !b.Unschedulable, nil
	}
	if err := x.begin(ctx); err != nil {
		return "", false, err
	}
	return detail, true, setUnschedulable(ctx, x.c, b.Node, true)
}

func undoCordon(ctx context.Context, u *undoing) (string, error) {
	var b cordonBefore
	if err := u.before(&b); err != nil {
		return "", err
	}
	if b.Unschedulable {
		return "node " + b.Node + " was cordoned before: left as is", nil
	}
	if err := setUnschedulable(ctx, u.c, b.Node, false); err != nil {
		return "", err
	}
	return "uncordoned node " + b.Node, nil
}

func setUnschedulable(ctx context.Context, c *Cluster, node string, v bool) error {
	patch := fmt.Appendf(nil, `{"spec":{"unschedulable":%t}}`, v)
	if _, err := c.Core.Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("cordon node %s: %w", node, err)
	}
	return nil
}

func cordonRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
	}
}

// DefaultAnnotationPrefix starts the keys annotate sets.
const DefaultAnnotationPrefix = "vigil.dev/"

// AnnotateParams are the keys of annotate.
type AnnotateParams struct {
	// Prefix starts the annotation keys alert-rule, alert-fingerprint and
	// alert-time (default vigil.dev/).
	Prefix string `yaml:"prefix"`
}

// Validate checks that the prefix makes valid annotation keys.
func (p *AnnotateParams) Validate() error {
	if p.Prefix != "" {
		if errs := validation.IsQualifiedName(p.Prefix + "alert-fingerprint"); len(errs) > 0 {
			return sinkutil.Fieldf("prefix", "%q does not make annotation keys: %s", p.Prefix, errs[0])
		}
	}
	return nil
}

func (p *AnnotateParams) keys() (rule, fingerprint, at string) {
	pre := cmp.Or(p.Prefix, DefaultAnnotationPrefix)
	return pre + "alert-rule", pre + "alert-fingerprint", pre + "alert-time"
}

type annotateBefore struct {
	// Annotations are the values of the keys before, nil when absent.
	Annotations map[string]*string `json:"annotations"`
}

func runAnnotate(ctx context.Context, x *execution) (string, bool, error) {
	p := x.p.(*AnnotateParams)
	t := x.rec.Target
	kr, kf, kt := p.keys()
	want := map[string]*string{kr: ptr(x.rec.Alert.Rule), kf: ptr(x.rec.Alert.Fingerprint),
		kt: ptr(x.rec.Alert.Time.UTC().Format(time.RFC3339))}
	res := resourceOf(x.c, t)
	var b annotateBefore
	err := x.state(&b, func() error {
		obj, err := res.Get(ctx, t.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get %s: %w", t, err)
		}
		x.rec.Target.Kind = obj.GetKind()
		b.Annotations = map[string]*string{}
		cur := obj.GetAnnotations()
		for k := range want {
			if v, ok := cur[k]; ok {
				b.Annotations[k] = &v
			} else {
				b.Annotations[k] = nil
			}
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	detail := fmt.Sprintf("annotate %s=%s, %s=%s", kr, x.rec.Alert.Rule, kf, x.rec.Alert.Fingerprint)
	changed := false
	for k, v := range want {
		if b.Annotations[k] == nil || *b.Annotations[k] != *v {
			changed = true
		}
	}
	if !x.enforce || !changed {
		return detail, changed, nil
	}
	if err := x.begin(ctx); err != nil {
		return "", false, err
	}
	return detail, true, patchAnnotations(ctx, res, t, want)
}

func undoAnnotate(ctx context.Context, u *undoing) (string, error) {
	var b annotateBefore
	if err := u.before(&b); err != nil {
		return "", err
	}
	if err := patchAnnotations(ctx, resourceOf(u.c, u.rec.Target), u.rec.Target, b.Annotations); err != nil {
		return "", err
	}
	return "restored annotations " + strings.Join(slices.Sorted(maps.Keys(b.Annotations)), ", "), nil
}

// resourceOf is the dynamic client of the target's resource.
func resourceOf(c *Cluster, t Target) dynamic.ResourceInterface {
	gvr := schema.GroupVersionResource{Group: t.APIGroup, Version: cmp.Or(t.APIVersion, "v1"), Resource: t.resource()}
	if t.Namespace != "" {
		return c.Dynamic.Resource(gvr).Namespace(t.Namespace)
	}
	return c.Dynamic.Resource(gvr)
}

func patchAnnotations(ctx context.Context, res dynamic.ResourceInterface, t Target, values map[string]*string) error {
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": values}})
	if err != nil {
		return err
	}
	if _, err := res.Patch(ctx, t.Name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("annotate %s: %w", t, err)
	}
	return nil
}

func annotateRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"get", "patch"}}}
}
