package respond

import (
	"strings"

	"github.com/vigil-k8s/vigil/sinks/internal/sinkutil"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

// The API groups of the objects actions find in alerts.
const (
	groupApps = "apps"
	groupRBAC = "rbac.authorization.k8s.io"
)

// serviceAccountPrefix starts the username of a service account.
const serviceAccountPrefix = "system:serviceaccount:"

// Keys of user.extra that the apiserver sets for a service-account token
// bound to a pod: the pod and the node it runs on.
const (
	extraPodName  = "authentication.kubernetes.io/pod-name"
	extraNodeName = "authentication.kubernetes.io/node-name"
)

// Values of the from key of pod and node actions.
const (
	FromObject     = "object"
	FromCredential = "credential"
)

// credentialPod is the pod whose bound service-account token made the
// request: the workload the credential was taken from.
func credentialPod(al *detect.Alert) (Target, error) {
	sa, ok := serviceAccountUser(al.User.Username)
	pod := al.User.Extra[extraPodName]
	if !ok || len(pod) != 1 || pod[0] == "" {
		return Target{}, skip("the alert's credential is not a token bound to a pod")
	}
	return Target{Kind: "Pod", Namespace: sa.Namespace, Name: pod[0]}, nil
}

// credentialNode is the node of the pod whose bound token made the request.
func credentialNode(al *detect.Alert) (Target, error) {
	node := al.User.Extra[extraNodeName]
	if _, ok := serviceAccountUser(al.User.Username); !ok || len(node) != 1 || node[0] == "" {
		return Target{}, skip("the alert's credential is not a token bound to a pod on a node")
	}
	return Target{Kind: "Node", Name: node[0]}, nil
}

// FromParams are the keys of actions that can take their target from the
// credential instead of the request's object.
type FromParams struct {
	// From is object (what the request was about, the default) or
	// credential (the pod, or its node, whose bound service-account token
	// made the request).
	From string `yaml:"from"`
}

// Validate checks from.
func (p *FromParams) Validate() error {
	if p.From != "" && p.From != FromObject && p.From != FromCredential {
		return sinkutil.Fieldf("from", "%q is not object or credential", p.From)
	}
	return nil
}

// fromTarget picks the target finder of p.From.
func fromTarget(object, credential func(*detect.Alert) (Target, error)) func(*detect.Alert, Params) (Target, error) {
	return func(al *detect.Alert, p Params) (Target, error) {
		if fp, ok := p.(interface{ from() string }); ok && fp.from() == FromCredential {
			return credential(al)
		}
		return object(al)
	}
}

func (p *FromParams) from() string { return p.From }

// noTarget is the reason an action has nothing to act on: the alert names
// no fitting object, or the object is gone. It makes a skipped record.
type noTarget struct{ msg string }

func (e *noTarget) Error() string { return e.msg }

func skip(msg string) error { return &noTarget{msg} }

// ref returns the alert's objectRef, or the zero value.
func ref(al *detect.Alert) ingest.ObjectRef {
	if al.ObjectRef == nil {
		return ingest.ObjectRef{}
	}
	return *al.ObjectRef
}

// podTarget is the pod an alert names: the object of pod requests,
// exec/attach/port-forward included.
func podTarget(al *detect.Alert) (Target, error) {
	r := ref(al)
	if r.Resource != "pods" || r.APIGroup != "" || r.Name == "" {
		return Target{}, skip("the alert names no pod")
	}
	return Target{Kind: "Pod", Namespace: r.Namespace, Name: r.Name}, nil
}

// workloadTarget is a pod (its owner is found in the cluster) or a
// Deployment, StatefulSet or ReplicaSet the alert names.
func workloadTarget(al *detect.Alert) (Target, error) {
	r := ref(al)
	if r.Resource == "pods" {
		return podTarget(al)
	}
	kind := map[string]string{"deployments": "Deployment", "statefulsets": "StatefulSet", "replicasets": "ReplicaSet"}[r.Resource]
	if kind == "" || r.APIGroup != groupApps || r.Name == "" {
		return Target{}, skip("the alert names no pod or workload")
	}
	return Target{Kind: kind, Namespace: r.Namespace, Name: r.Name}, nil
}

// bindingTarget is the RoleBinding or ClusterRoleBinding the alert names.
func bindingTarget(al *detect.Alert) (Target, error) {
	r := ref(al)
	if r.APIGroup != groupRBAC || r.Name == "" {
		return Target{}, skip("the alert names no binding")
	}
	switch r.Resource {
	case "rolebindings":
		return Target{Kind: "RoleBinding", Namespace: r.Namespace, Name: r.Name}, nil
	case "clusterrolebindings":
		return Target{Kind: "ClusterRoleBinding", Name: r.Name}, nil
	}
	return Target{}, skip("the alert names no binding")
}

// userTarget is the identity that made the request: a ServiceAccount for
// service account users, else a User.
func userTarget(al *detect.Alert) (Target, error) {
	u := al.User.Username
	if u == "" {
		return Target{}, skip("the alert has no user")
	}
	if t, ok := serviceAccountUser(u); ok {
		return t, nil
	}
	return Target{Kind: "User", Name: u}, nil
}

// serviceAccountUser parses system:serviceaccount:NS:NAME.
func serviceAccountUser(u string) (Target, bool) {
	rest, ok := strings.CutPrefix(u, serviceAccountPrefix)
	if !ok {
		return Target{}, false
	}
	ns, name, ok := strings.Cut(rest, ":")
	if !ok || ns == "" || name == "" {
		return Target{}, false
	}
	return Target{Kind: "ServiceAccount", Namespace: ns, Name: name}, true
}

// serviceAccountTarget is the service account behind an alert: the user
// when it is one (its credential was used), else the service account the
// request was about (a token requested for it).
func serviceAccountTarget(al *detect.Alert) (Target, error) {
	if t, ok := serviceAccountUser(al.User.Username); ok {
		return t, nil
	}
	if r := ref(al); r.Resource == "serviceaccounts" && r.APIGroup == "" && r.Name != "" {
		return Target{Kind: "ServiceAccount", Namespace: r.Namespace, Name: r.Name}, nil
	}
	return Target{}, skip("the alert names no service account")
}

// tokenSecretTarget is the service account whose credential made the
// request (its token secrets are found in the cluster), else the secret
// the alert names (a token that was read; checked in the cluster), else
// the service account the request was about.
func tokenSecretTarget(al *detect.Alert) (Target, error) {
	if t, ok := serviceAccountUser(al.User.Username); ok {
		return t, nil
	}
	if r := ref(al); r.Resource == "secrets" && r.APIGroup == "" && r.Name != "" {
		return Target{Kind: "Secret", Namespace: r.Namespace, Name: r.Name}, nil
	}
	return serviceAccountTarget(al)
}

// nodeTarget is the node the alert names, or a pod whose node is looked
// up in the cluster.
func nodeTarget(al *detect.Alert) (Target, error) {
	r := ref(al)
	if r.Resource == "nodes" && r.APIGroup == "" && r.Name != "" {
		return Target{Kind: "Node", Name: r.Name}, nil
	}
	if r.Resource == "pods" {
		return podTarget(al)
	}
	return Target{}, skip("the alert names no node or pod")
}

// objectTarget is the object of the alert's request, without subresource.
func objectTarget(al *detect.Alert) (Target, error) {
	r := ref(al)
	if r.Resource == "" || r.Name == "" {
		return Target{}, skip("the alert names no object")
	}
	version := r.APIVersion
	if version == "" {
		version = "v1"
	}
	return Target{Kind: kindOf(r.Resource), Namespace: r.Namespace, Name: r.Name,
		APIGroup: r.APIGroup, APIVersion: version, Resource: r.Resource}, nil
}

// optionalTarget is the object of the alert, or none (webhook).
func optionalTarget(al *detect.Alert) (Target, error) {
	t, err := objectTarget(al)
	if err != nil {
		return Target{}, nil
	}
	return t, nil
}

// kindOf returns the kind of a known resource, else the resource itself:
// alerts carry resources, and only the cluster knows every kind.
func kindOf(resource string) string {
	for k, r := range kindResources {
		if r == resource {
			return k
		}
	}
	return resource
}
