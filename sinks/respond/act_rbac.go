package respond

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"
)

// Values of revoke-binding's keys.
const (
	ModeDelete       = "delete"
	ModeStripSubject = "strip-subject"
	FindObject       = "object"
	FindSubject      = "subject"
)

// RevokeParams are the keys of revoke-binding.
type RevokeParams struct {
	// Find is object (the binding the alert names, the default) or
	// subject (every binding naming the alert's user).
	Find string `yaml:"find"`
	// Mode is delete (the default with find: object) or strip-subject
	// (the default with find: subject).
	Mode string `yaml:"mode"`
	// Subjects are globs of the subjects strip-subject takes from the
	// binding the alert names (User:NAME, Group:NAME,
	// ServiceAccount:NS/NAME): alerts carry no request body, so the
	// subjects a binding request added are not known.
	Subjects []string `yaml:"subjects"`
}

// Validate checks the combination of find, mode and subjects.
func (p *RevokeParams) Validate() error {
	var errs []error
	if p.Find != "" && p.Find != FindObject && p.Find != FindSubject {
		errs = append(errs, sinkutil.Fieldf("find", "%q is not object or subject", p.Find))
	}
	if p.Mode != "" && p.Mode != ModeDelete && p.Mode != ModeStripSubject {
		errs = append(errs, sinkutil.Fieldf("mode", "%q is not delete or strip-subject", p.Mode))
	}
	for i, g := range p.Subjects {
		errs = append(errs, checkGlob(fmt.Sprintf("subjects[%d]", i), g))
	}
	switch {
	case p.find() == FindSubject && len(p.Subjects) > 0:
		errs = append(errs, sinkutil.Fieldf("subjects", "only with find: object (find: subject strips the alert's user)"))
	case p.find() == FindObject && p.mode() == ModeStripSubject && len(p.Subjects) == 0:
		errs = append(errs, sinkutil.Fieldf("subjects", "required with mode strip-subject and find: object: alerts do not carry a binding's subjects"))
	}
	return errors.Join(errs...)
}

func (p *RevokeParams) find() string { return cmp.Or(p.Find, FindObject) }

func (p *RevokeParams) mode() string {
	if p.Mode != "" {
		return p.Mode
	}
	if p.find() == FindSubject {
		return ModeStripSubject
	}
	return ModeDelete
}

func revokeTarget(al *detect.Alert, p Params) (Target, error) {
	if p.(*RevokeParams).find() == FindSubject {
		return userTarget(al)
	}
	return bindingTarget(al)
}

// bindingsBefore is what revoke-binding and disable-serviceaccount change.
type bindingsBefore struct {
	Bindings []bindingChange `json:"bindings"`
	// Annotation is disable-serviceaccount's annotation before, nil when
	// it was absent.
	Annotation *string `json:"annotation,omitempty"`
}

func runRevoke(ctx context.Context, x *execution) (string, bool, error) {
	p := x.p.(*RevokeParams)
	t := x.rec.Target
	var b bindingsBefore
	var left []string
	err := x.state(&b, func() error {
		if p.find() == FindSubject {
			var err error
			b.Bindings, left, err = subjectChanges(ctx, x, subjectOf(t), p.mode())
			return err
		}
		bc, err := getBinding(ctx, x.c, t.Kind, t.Namespace, t.Name)
		if err != nil {
			return err
		}
		if p.mode() == ModeDelete {
			if err := x.g.Subjects(bc.Subjects); err != nil {
				return refuse("%s binds %v", t, err)
			}
			b.Bindings = []bindingChange{{Binding: bc, Deleted: true}}
			return nil
		}
		var removed []rbacv1.Subject
		for _, s := range bc.Subjects {
			if anyGlob(p.Subjects, subjectString(s)) {
				removed = append(removed, s)
			}
		}
		if err := x.g.Subjects(removed); err != nil {
			return err
		}
		if len(removed) > 0 {
			b.Bindings = []bindingChange{{Binding: bc, Removed: removed}}
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	detail := describeChanges(b.Bindings)
	if len(b.Bindings) == 0 {
		detail = "no binding to change"
	}
	if len(left) > 0 {
		detail += "; left alone: " + fmt.Sprint(left)
	}
	if !x.enforce || len(b.Bindings) == 0 {
		return detail, len(b.Bindings) > 0, nil
	}
	if err := x.begin(ctx); err != nil {
		return "", false, err
	}
	return detail, true, applyChanges(ctx, x.c, b.Bindings)
}

// subjectChanges finds the bindings naming s and what to do with each;
// protected bindings are left alone and listed.
func subjectChanges(ctx context.Context, x *execution, s rbacv1.Subject, mode string) ([]bindingChange, []string, error) {
	all, err := bindingsOf(ctx, x.c, s)
	if err != nil {
		return nil, nil, err
	}
	var cs []bindingChange
	var left []string
	for _, bc := range all {
		t := Target{Kind: bc.Kind, Namespace: bc.Namespace, Name: bc.Name}
		err := x.g.Target(t)
		if err == nil && mode == ModeDelete {
			err = x.g.Subjects(bc.Subjects)
		}
		if err != nil {
			left = append(left, fmt.Sprintf("%s (%v)", t, err))
			continue
		}
		if mode == ModeDelete {
			cs = append(cs, bindingChange{Binding: bc, Deleted: true})
		} else {
			cs = append(cs, bindingChange{Binding: bc, Removed: []rbacv1.Subject{s}})
		}
	}
	return cs, left, nil
}

func undoBindings(ctx context.Context, u *undoing) (string, error) {
	var b bindingsBefore
	if err := u.before(&b); err != nil {
		return "", err
	}
	return restoreChanges(ctx, u.c, b.Bindings)
}

func revokeRules() []rbacv1.PolicyRule {
	return bindingRules("get", "list", "create", "update", "delete")
}

// DefaultDisabledAnnotation marks service accounts vigil disabled.
const DefaultDisabledAnnotation = "vigil.dev/disabled"

// DisableParams are the keys of disable-serviceaccount.
type DisableParams struct {
	// Annotation is set on the service account (default
	// vigil.dev/disabled) to the alert's rule and fingerprint.
	Annotation string `yaml:"annotation"`
}

// Validate checks the annotation key.
func (p *DisableParams) Validate() error {
	if p.Annotation != "" {
		if errs := validation.IsQualifiedName(p.Annotation); len(errs) > 0 {
			return sinkutil.Fieldf("annotation", "%q is not an annotation key: %s", p.Annotation, errs[0])
		}
	}
	return nil
}

func (p *DisableParams) annotation() string { return cmp.Or(p.Annotation, DefaultDisabledAnnotation) }

func runDisable(ctx context.Context, x *execution) (string, bool, error) {
	p := x.p.(*DisableParams)
	t := x.rec.Target
	value := fmt.Sprintf("alert %s %s", x.rec.Alert.Rule, x.rec.Alert.Fingerprint)
	var b bindingsBefore
	var left []string
	err := x.state(&b, func() error {
		sa, err := x.c.Core.ServiceAccounts(t.Namespace).Get(ctx, t.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get service account: %w", err)
		}
		if v, ok := sa.Annotations[p.annotation()]; ok {
			b.Annotation = &v
		}
		b.Bindings, left, err = subjectChanges(ctx, x, subjectOf(t), ModeStripSubject)
		return err
	})
	if err != nil {
		return "", false, err
	}
	detail := fmt.Sprintf("annotate %s=%q", p.annotation(), value)
	if len(b.Bindings) > 0 {
		detail += "; " + describeChanges(b.Bindings)
	}
	if len(left) > 0 {
		detail += "; left alone: " + fmt.Sprint(left)
	}
	changed := len(b.Bindings) > 0 || b.Annotation == nil
	if !x.enforce || !changed {
		return detail, changed, nil
	}
	if err := x.begin(ctx); err != nil {
		return "", false, err
	}
	if err := annotateServiceAccount(ctx, x.c, t, p.annotation(), &value); err != nil {
		return "", false, err
	}
	return detail, true, applyChanges(ctx, x.c, b.Bindings)
}

func undoDisable(ctx context.Context, u *undoing) (string, error) {
	p := u.p.(*DisableParams)
	var b bindingsBefore
	if err := u.before(&b); err != nil {
		return "", err
	}
	detail, err := restoreChanges(ctx, u.c, b.Bindings)
	if err != nil {
		return "", err
	}
	if err := annotateServiceAccount(ctx, u.c, u.rec.Target, p.annotation(), b.Annotation); err != nil {
		return "", err
	}
	return cmp.Or(detail, "no bindings to restore") + "; annotation " + p.annotation() + " restored", nil
}

// annotateServiceAccount sets (nil: removes) one annotation.
func annotateServiceAccount(ctx context.Context, c *Cluster, t Target, key string, value *string) error {
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]*string{key: value}}})
	if err != nil {
		return err
	}
	_, err = c.Core.ServiceAccounts(t.Namespace).Patch(ctx, t.Name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: FieldManager})
	if err != nil {
		return fmt.Errorf("annotate %s: %w", t, err)
	}
	return nil
}

func disableRules() []rbacv1.PolicyRule {
	return append(bindingRules("get", "list", "update"),
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, Verbs: []string{"get", "patch"}})
}
