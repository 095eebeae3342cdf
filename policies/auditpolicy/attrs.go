package auditpolicy

import (
	"fmt"
	"strings"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

// Attributes rebuilds the request attributes the apiserver evaluated its
// audit policy with, from the event it wrote. The policy sees the
// authenticated user (impersonation is applied after auditing starts), and
// no user at all when authentication failed.
func Attributes(e *ingest.Event) authorizer.AttributesRecord {
	a := authorizer.AttributesRecord{
		Verb:            e.Verb,
		Namespace:       e.ObjectRef.Namespace,
		APIGroup:        e.ObjectRef.APIGroup,
		APIVersion:      e.ObjectRef.APIVersion,
		Resource:        e.ObjectRef.Resource,
		Subresource:     e.ObjectRef.Subresource,
		Name:            e.ObjectRef.Name,
		ResourceRequest: e.ObjectRef.Resource != "",
		Path:            e.RequestURI,
	}
	if i := strings.IndexByte(a.Path, '?'); i >= 0 {
		a.Path = a.Path[:i]
	}
	if e.User.Username != "" || len(e.User.Groups) > 0 {
		a.User = &user.DefaultInfo{Name: e.User.Username, UID: e.User.UID, Groups: e.User.Groups, Extra: e.User.Extra}
	}
	return a
}

// describe names a request for messages: verb, resource and object, or
// verb and path.
func describe(a authorizer.AttributesRecord) string {
	if !a.ResourceRequest {
		return fmt.Sprintf("%s %s", a.Verb, a.Path)
	}
	res := a.Resource
	if a.Subresource != "" {
		res += "/" + a.Subresource
	}
	if a.APIGroup != "" {
		res += "." + a.APIGroup
	}
	obj := a.Name
	if a.Namespace != "" {
		obj = a.Namespace + "/" + a.Name
	}
	if obj != "" {
		return fmt.Sprintf("%s %s %s", a.Verb, res, obj)
	}
	return fmt.Sprintf("%s %s", a.Verb, res)
}

// scope matches the requests a rule's audit block names, with the
// apiserver's own matching: the block is read as a policy rule.
type scope struct {
	evals []audit.PolicyRuleEvaluator
}

func newScope(n detect.AuditNeeds) scope {
	var rules []auditinternal.PolicyRule
	base := auditinternal.PolicyRule{Level: auditinternal.LevelMetadata, Verbs: n.Verbs}
	if len(n.Resources) > 0 {
		r := base
		for _, gr := range n.Resources {
			r.Resources = append(r.Resources, auditinternal.GroupResources{Group: gr.Group, Resources: gr.Resources})
		}
		rules = append(rules, r)
	}
	if len(n.NonResourceURLs) > 0 {
		r := base
		r.NonResourceURLs = n.NonResourceURLs
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		rules = append(rules, base)
	}
	s := scope{}
	for _, r := range rules {
		s.evals = append(s.evals, policy.NewPolicyRuleEvaluator(&auditinternal.Policy{Rules: []auditinternal.PolicyRule{r}}))
	}
	return s
}

func (s scope) matches(a authorizer.Attributes) bool {
	for _, e := range s.evals {
		if e.EvaluatePolicyRule(a).Level != auditinternal.LevelNone {
			return true
		}
	}
	return false
}
