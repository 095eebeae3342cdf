package policies_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/vigil-k8s/vigil/detect"
)

// request builds one audit event.
func request(user, agent, ip, verb, uri, resource, sub, ns, name string, code int) []byte {
	ev := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": fmt.Sprintf("%s-%s-%s-%d", user, verb, uri, code),
		"stage": "ResponseComplete", "requestURI": uri, "verb": verb,
		"user":      map[string]any{"username": user, "groups": []string{"system:serviceaccounts", "system:authenticated"}},
		"sourceIPs": []string{ip}, "userAgent": agent,
		"objectRef":                map[string]any{"resource": resource, "subresource": sub, "namespace": ns, "name": name, "apiVersion": "v1"},
		"responseStatus":           map[string]any{"code": code},
		"requestReceivedTimestamp": "2026-11-22T06:30:00.000000Z", "stageTimestamp": "2026-11-22T06:30:00.100000Z",
	}
	b, _ := json.Marshal(ev)
	return b
}

func alertsFor(t *testing.T, rs *detect.RuleSet, ev []byte) (map[string]detect.Severity, detect.Severity) {
	t.Helper()
	alerts, err := detect.Evaluate(rs, [][]byte{ev})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]detect.Severity{}
	worst := detect.SeverityUnknown
	for _, a := range alerts {
		got[a.Rule] = a.Severity
		worst = max(worst, a.Severity)
	}
	return got, worst
}

// TestKubeSystemServiceAccounts checks that the tokens of kube-system's
// service accounts are not the control plane: kube-system:default,
// kube-proxy's and an account an attacker created there, used with a
// script from an outside address to list every secret or exec into a pod,
// raise at least what an application's token raises, and more.
func TestKubeSystemServiceAccounts(t *testing.T) {
	_, rs := builtin(t)
	const outside = "203.0.113.50"
	actions := []struct {
		name                         string
		verb, uri, resource, sub, ns string
		code                         int
		want                         []string
	}{
		{"list every secret", "list", "/api/v1/secrets?limit=500", "secrets", "", "", 200,
			[]string{"serviceaccount-used-outside-cluster", "secret-read-by-script-client", "secret-list-all-namespaces-by-serviceaccount"}},
		{"exec into a pod", "get", "/api/v1/namespaces/prod/pods/api-1/exec?command=sh&stdin=true&tty=true", "pods", "exec", "prod", 101,
			[]string{"serviceaccount-used-outside-cluster", "pod-exec"}},
	}
	for _, sa := range []string{"kube-system:default", "kube-system:kube-proxy", "kube-system:cluster-admin-helper", "team-a:web"} {
		for _, a := range actions {
			t.Run(sa+" "+a.name, func(t *testing.T) {
				ev := request("system:serviceaccount:"+sa, "python-requests/2.31.0", outside, a.verb, a.uri, a.resource, a.sub, a.ns, "", a.code)
				got, worst := alertsFor(t, rs, ev)
				for _, id := range a.want {
					if _, ok := got[id]; !ok {
						t.Errorf("%s did not fire; got %v", id, got)
					}
				}
				if worst < detect.SeverityHigh {
					t.Errorf("worst severity %s, want high or above; got %v", worst, got)
				}
				if sa != "team-a:web" {
					if _, ok := got["serviceaccount-script-client-sensitive-namespace"]; !ok {
						t.Errorf("serviceaccount-script-client-sensitive-namespace did not fire; got %v", got)
					}
				}
			})
		}
	}
}

// TestControlPlaneIdentities checks that named control-plane identities
// are exempt from what they routinely do, never from how or from where:
// another client, an outside address, exec, or an action out of their
// role alerts at high or critical; their routine traffic raises nothing of
// medium or above.
func TestControlPlaneIdentities(t *testing.T) {
	_, rs := builtin(t)
	ids := []struct{ user, agent string }{
		{"system:serviceaccount:kube-system:replicaset-controller", "kube-controller-manager/v1.34.4 (linux/amd64) kubernetes/$Format/system:serviceaccount:kube-system:replicaset-controller"},
		{"system:kube-controller-manager", "kube-controller-manager/v1.34.4 (linux/amd64) kubernetes/$Format/shared-informers"},
		{"system:kube-scheduler", "kube-scheduler/v1.34.4 (linux/amd64) kubernetes/$Format/leader-election"},
		{"system:node:node-1", "kubelet/v1.34.4 (linux/amd64) kubernetes/$Format"},
	}
	const inside, outside = "10.0.0.10", "198.51.100.7"
	for _, id := range ids {
		cases := []struct {
			name                                string
			agent, ip, verb, uri, resource, sub string
			ns                                  string
			code                                int
			want                                string
			min                                 detect.Severity
		}{
			{"routine read", id.agent, inside, "get", "/api/v1/namespaces/team-a/pods/web", "pods", "", "team-a", 200, "", detect.SeverityUnknown},
			{"python client", "python-requests/2.31.0", inside, "list", "/api/v1/secrets", "secrets", "", "", 200, "control-plane-identity-unexpected-client", detect.SeverityHigh},
			{"curl client", "curl/8.5.0", inside, "get", "/api/v1/namespaces/kube-system/secrets/x", "secrets", "", "kube-system", 403, "control-plane-identity-unexpected-client", detect.SeverityHigh},
			{"kubectl client", "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0", inside, "list", "/api/v1/pods", "pods", "", "", 200, "control-plane-identity-unexpected-client", detect.SeverityHigh},
			{"bare Go client", "Go-http-client/2.0", inside, "list", "/api/v1/nodes", "nodes", "", "", 200, "control-plane-identity-unexpected-client", detect.SeverityHigh},
			{"outside address", id.agent, outside, "get", "/api/v1/namespaces/team-a/pods/web", "pods", "", "team-a", 200, "control-plane-identity-outside-cluster", detect.SeverityCritical},
			{"exec", id.agent, inside, "get", "/api/v1/namespaces/prod/pods/api-1/exec?command=sh", "pods", "exec", "prod", 101, "control-plane-identity-exec", detect.SeverityCritical},
			{"writes a binding", id.agent, inside, "create", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "clusterrolebindings", "", "", 201, "control-plane-identity-unusual-action", detect.SeverityHigh},
		}
		for _, c := range cases {
			t.Run(id.user+" "+c.name, func(t *testing.T) {
				got, worst := alertsFor(t, rs, request(id.user, c.agent, c.ip, c.verb, c.uri, c.resource, c.sub, c.ns, "", c.code))
				if c.want == "" {
					if worst >= detect.SeverityMedium {
						t.Errorf("routine traffic raised %v", got)
					}
					return
				}
				if _, ok := got[c.want]; !ok {
					t.Errorf("%s did not fire; got %v", c.want, got)
				}
				if worst < c.min {
					t.Errorf("worst severity %s, want %s; got %v", worst, c.min, got)
				}
			})
		}
	}
}
