package respond

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// secretCopy is what it takes to recreate a secret. The journal holds it:
// it is a credential, which is why the journal is created 0600.
type secretCopy struct {
	Name        string            `json:"name"`
	Type        corev1.SecretType `json:"type"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Data        map[string][]byte `json:"data,omitempty"`
}

type tokensBefore struct {
	Secrets []secretCopy `json:"secrets"`
}

func runDeleteTokens(ctx context.Context, x *execution) (string, bool, error) {
	t := x.rec.Target
	secrets := x.c.Core.Secrets(t.Namespace)
	var b tokensBefore
	err := x.state(&b, func() error {
		var found []corev1.Secret
		if t.Kind == "Secret" {
			s, err := secrets.Get(ctx, t.Name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("get secret: %w", err)
			}
			if s.Type != corev1.SecretTypeServiceAccountToken {
				return skip(fmt.Sprintf("secret %s/%s is of type %s, not a service account token", t.Namespace, t.Name, s.Type))
			}
			found = []corev1.Secret{*s}
		} else {
			list, err := secrets.List(ctx, metav1.ListOptions{FieldSelector: "type=" + string(corev1.SecretTypeServiceAccountToken)})
			if err != nil {
				return fmt.Errorf("list token secrets: %w", err)
			}
			for _, s := range list.Items {
				if s.Annotations[corev1.ServiceAccountNameKey] == t.Name {
					found = append(found, s)
				}
			}
		}
		for _, s := range found {
			sa := serviceAccountPrefix + t.Namespace + ":" + s.Annotations[corev1.ServiceAccountNameKey]
			if err := x.g.Identity(sa); err != nil {
				return refuse("secret %s holds a token of %v", s.Name, err)
			}
			b.Secrets = append(b.Secrets, secretCopy{Name: s.Name, Type: s.Type, Labels: s.Labels,
				Annotations: s.Annotations, Data: s.Data})
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	if len(b.Secrets) == 0 {
		return "no token secrets (bound tokens cannot be revoked one by one: disable-serviceaccount takes their rights)", false, nil
	}
	names := make([]string, len(b.Secrets))
	for i, s := range b.Secrets {
		names[i] = s.Name
	}
	detail := fmt.Sprintf("delete token secrets %s in %s", strings.Join(names, ", "), t.Namespace)
	if !x.enforce {
		return detail, true, nil
	}
	if err := x.begin(ctx); err != nil {
		return "", false, err
	}
	for _, s := range b.Secrets {
		if err := secrets.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return "", false, fmt.Errorf("delete secret %s/%s: %w", t.Namespace, s.Name, err)
		}
	}
	return detail, true, nil
}

func undoDeleteTokens(ctx context.Context, u *undoing) (string, error) {
	var b tokensBefore
	if err := u.before(&b); err != nil {
		return "", err
	}
	ns := u.rec.Target.Namespace
	var notes []string
	for _, s := range b.Secrets {
		_, err := u.c.Core.Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: ns, Labels: s.Labels, Annotations: s.Annotations},
			Type:       s.Type, Data: s.Data,
		}, metav1.CreateOptions{FieldManager: FieldManager})
		switch {
		case apierrors.IsAlreadyExists(err):
			notes = append(notes, "secret "+s.Name+" exists again: left as is")
		case err != nil:
			return "", fmt.Errorf("recreate secret %s/%s: %w", ns, s.Name, err)
		default:
			notes = append(notes, "recreated secret "+s.Name)
		}
	}
	return strings.Join(notes, "; "), nil
}

func tokenRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "create", "delete"}},
	}
}
