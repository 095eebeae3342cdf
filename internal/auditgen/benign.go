package auditgen

import (
	"encoding/json"
	"fmt"
)

// Profiles.
const (
	// ProfileMix is a busy cluster with a few percent of what the built-in
	// rules look for: secret reads, exec, bindings, refusals, probes.
	ProfileMix = "mix"
	// ProfileBenignDay is a day of normal life and nothing else: control
	// plane and nodes, controllers and operators, CI deploys and jobs, Helm
	// installs and upgrades, node churn, people reading, debugging and
	// granting routine access. Its default rate spreads 130,000
	// events over 24 hours.
	ProfileBenignDay = "benign-day"
)

// BenignDayRate is the default event rate of ProfileBenignDay.
const BenignDayRate = 1.5

// Profiles lists the profile names.
var Profiles = []string{ProfileMix, ProfileBenignDay, ProfileAttackHeavy}

// Check reports options New cannot use: an unknown profile.
func (o Options) Check() error {
	switch o.Profile {
	case "", ProfileMix, ProfileBenignDay, ProfileAttackHeavy:
		return nil
	}
	return fmt.Errorf("profile %q: want one of %v", o.Profile, Profiles)
}

// A day of normal life (ProfileBenignDay): the bulk of a cluster's traffic
// plus what people, pipelines and operators do on an ordinary day, written
// as the multi-request actions they are. Nothing here is an attack; the
// built-in rules should raise nothing above low on it, and little of that.
func (g *Generator) benignPatterns() []pattern {
	return []pattern{
		{20000, (*Generator).nodeLease},
		{5000, (*Generator).leaderLease},
		{2000, (*Generator).apiserverLease},
		{4000, (*Generator).nodeStatus},
		{4000, (*Generator).kubeletGetPod},
		{5000, (*Generator).kubeletPodStatus},
		{3000, (*Generator).kubeletConfigMap},
		{2500, (*Generator).kubeletSecret},
		{3000, (*Generator).kubeletToken},
		{13000, (*Generator).controller},
		{1500, (*Generator).schedulerBind},
		{7000, (*Generator).createEvent},
		{3000, (*Generator).review},
		{2500, (*Generator).apiserverInternal},
		{5000, (*Generator).health},
		{2000, (*Generator).discovery},
		{1200, (*Generator).watch},
		{2500, (*Generator).prometheusScrape},
		{1200, (*Generator).certManagerDay},
		{1500, (*Generator).ingressDay},
		{2500, (*Generator).argocdWork},
		{1000, (*Generator).deployerWork},
		// People.
		{3000, (*Generator).personRead},
		{600, (*Generator).personLogs},
		{150, (*Generator).personSecret},
		{30, (*Generator).getAll},
		{20, (*Generator).helmList},
		{30, (*Generator).selfReview},
		{5, (*Generator).ownToken},
		{6, (*Generator).routineGrant},
		{4, (*Generator).benignExec},
		{2, (*Generator).benignPortForward},
		// Pipelines, jobs, installs.
		{40, (*Generator).rollout},
		{6, (*Generator).migrationJob},
		{25, (*Generator).cronRun},
		{3, (*Generator).helmInstall},
		{10, (*Generator).helmUpgrade},
		// Operators and node churn.
		{4, (*Generator).operatorRestart},
		{4, (*Generator).nodeJoin},
		{3, (*Generator).nodeRemove},
	}
}

// certManagerDay is cert-manager at work on a quiet day: certificates are
// watched, and a secret is read by name only when one is renewed.
func (g *Generator) certManagerDay(e *event) {
	e.who = g.c.certManager
	ns := g.appNS()
	d := ns.deploys[g.r.IntN(len(ns.deploys))]
	switch g.r.IntN(50) {
	case 0:
		e.verb = "get"
		g.ref(e, "secrets", "", "v1", ns.name, d.name+"-tls", "")
	case 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12:
		e.verb = "update"
		g.ref(e, "certificaterequests", "cert-manager.io", "v1", ns.name, d.name+"-tls-1", "status")
	case 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24:
		e.verb = "update"
		g.ref(e, "leases", "coordination.k8s.io", "v1", "kube-system", "cert-manager-controller", "")
	default:
		e.verb = "get"
		g.ref(e, "certificates", "cert-manager.io", "v1", ns.name, d.name+"-tls", "")
	}
}

// ingressDay is the ingress controller: its lease, ingress statuses and
// lists; TLS secrets come from its informer (watch), not by name.
func (g *Generator) ingressDay(e *event) {
	e.who = g.c.ingress
	ns := g.appNS()
	d := ns.deploys[g.r.IntN(len(ns.deploys))]
	switch g.r.IntN(10) {
	case 1, 2, 3, 4:
		e.verb = "update"
		g.ref(e, "leases", "coordination.k8s.io", "v1", "ingress-nginx", "ingress-nginx-leader", "")
	case 5, 6:
		e.verb = "update"
		g.ref(e, "ingresses", "networking.k8s.io", "v1", ns.name, d.name, "status")
	default:
		e.verb = "list"
		g.ref(e, "ingresses", "networking.k8s.io", "v1", ns.name, "", "")
		g.query("limit=500&resourceVersion=0")
	}
}

// benignCast are the identities only the benign day uses.
type benignCast struct {
	superAdmin, bootstrap, autoscaler *identity
	helm                              []*identity
	// controllers are the controller-manager's service accounts the mix
	// does not use, by name.
	controllers map[string]*identity
	joined      int
}

func (g *Generator) cast() *benignCast {
	if g.b != nil {
		return g.b
	}
	b := &benignCast{controllers: map[string]*identity{}}
	b.superAdmin = newIdentity(identityOpts{username: "kubernetes-super-admin", groups: []string{"system:masters", "system:authenticated"},
		ip: "10.0.0.10", agent: "kubeadm/v1.34.4 (linux/amd64) kubernetes/$Format"})
	b.bootstrap = newIdentity(identityOpts{username: "system:bootstrap:" + randName(g.r, 6), groups: []string{"system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:authenticated"},
		ip: "10.0.9.1", agent: componentAgent("kubelet")})
	n := g.c.nodes[0]
	b.autoscaler = newIdentity(identityOpts{username: "system:serviceaccount:kube-system:cluster-autoscaler", uid: randUUID(g.r),
		groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}, ip: n.ip,
		agent: "cluster-autoscaler/v1.31.0 (linux/amd64) kubernetes/$Format"})
	for _, p := range g.c.people[4:6] {
		// The SREs run helm from their laptops with their own credentials.
		id := *p
		id.frag = []byte(string(p.frag[:len(p.frag)-len(kubectlAgent)-2]) + `"Helm/3.15.2"`)
		b.helm = append(b.helm, &id)
	}
	g.b = b
	return b
}

// push queues one event of a multi-request action with its own copies of
// the URI and bodies.
func (g *Generator) push(e *event) {
	c := *e
	if c.uri == "" {
		c.uri = string(g.uri)
	}
	c.req = append([]byte(nil), e.req...)
	c.resp = append([]byte(nil), e.resp...)
	if c.code == 0 {
		c.code = 200
	}
	if c.stage == "" {
		c.stage = "ResponseComplete"
	}
	if c.level == "" {
		c.level = "Metadata"
	}
	g.script = append(g.script, c)
}

// play makes the first queued event the current one.
func (g *Generator) play(e *event) {
	*e = g.script[0]
	g.script = g.script[1:]
	g.uri = append(g.uri[:0], e.uri...)
	e.uri = ""
}

// step builds an event on the generator's buffers for push.
func (g *Generator) step(who *identity, verb, resource, ns, name, sub string, code int) *event {
	e := &event{who: who, verb: verb, code: code}
	g.ref(e, resource, apiGroupOf(resource), "v1", ns, name, sub)
	return e
}

// apiGroupOf returns the API group of a resource the benign day writes.
func apiGroupOf(resource string) string {
	switch resource {
	case "roles", "rolebindings", "clusterroles", "clusterrolebindings":
		return "rbac.authorization.k8s.io"
	case "certificatesigningrequests":
		return "certificates.k8s.io"
	case "poddisruptionbudgets":
		return "policy"
	case "csinodes", "storageclasses":
		return "storage.k8s.io"
	case "horizontalpodautoscalers":
		return "autoscaling"
	}
	return groupOf(resource)
}

// body sets an event's request (and, for RequestResponse, response) body.
func body(e *event, level string, req, resp any) {
	e.level = level
	if req != nil {
		e.req, _ = json.Marshal(req)
	}
	if resp != nil {
		e.resp, _ = json.Marshal(resp)
	}
}

// bootstrap queues what the installer did before the day began: the
// administrators' group gets cluster-admin, and an administrator uses it.
func (g *Generator) bootstrap() {
	b := g.cast()
	crb := map[string]any{"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
		"metadata": map[string]any{"name": "sre-cluster-admins"},
		"subjects": []any{map[string]any{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "oidc:sre"}},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}}
	e := g.step(b.superAdmin, "create", "clusterrolebindings", "", "sre-cluster-admins", "", 201)
	body(e, "RequestResponse", crb, crb)
	g.push(e)
	sre := g.c.people[4]
	prod := g.c.apps[6]
	g.push(g.step(sre, "get", "secrets", prod.name, g.pick(prod.secrets), "", 200))
}

func (g *Generator) getAll(e *event) {
	p := g.person()
	ns := g.personNS(p)
	for _, r := range []string{"pods", "replicationcontrollers", "services", "daemonsets", "deployments", "replicasets",
		"statefulsets", "horizontalpodautoscalers", "cronjobs", "jobs"} {
		s := g.step(p, "list", r, ns.name, "", "", 200)
		g.query("limit=500")
		g.push(s)
	}
	g.play(e)
}

func (g *Generator) helmList(e *event) {
	p := g.cast().helm[g.r.IntN(2)]
	ns := ""
	if g.r.IntN(2) == 0 {
		ns = g.appNS().name
	}
	e.who, e.verb = p, "list"
	g.ref(e, "secrets", "", "v1", ns, "", "")
	g.query("labelSelector=owner%3Dhelm")
}

// ownToken is kubectl create token for the person's own service account.
func (g *Generator) ownToken(e *event) {
	i := g.r.IntN(len(g.c.people))
	p := g.c.people[i]
	e.who, e.verb, e.code = p, "create", 201
	g.ref(e, "serviceaccounts", "", "v1", p.namespaces[0].name, fmt.Sprintf("dev-%d", i), "token")
}

// routineGrant: an SRE gives a developer edit or admin on a team
// namespace, and the developer uses it.
func (g *Generator) routineGrant(e *event) {
	sre := g.c.people[4+g.r.IntN(2)]
	dev := g.c.people[g.r.IntN(4)]
	ns := g.c.apps[g.r.IntN(6)]
	role := "edit"
	if g.r.IntN(3) == 0 {
		role = "admin"
	}
	name := dev.username + "-" + role
	rb := map[string]any{"kind": "RoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
		"metadata": map[string]any{"name": name, "namespace": ns.name},
		"subjects": []any{map[string]any{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": dev.username}},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}}
	s := g.step(sre, "create", "rolebindings", ns.name, name, "", 201)
	body(s, "RequestResponse", rb, rb)
	g.push(s)
	g.push(g.step(dev, "list", "pods", ns.name, "", "", 200))
	g.push(g.step(dev, "get", "secrets", ns.name, g.pick(ns.secrets), "", 200))
	g.play(e)
}

var benignCommands = [][]string{{"ls", "-la", "/app"}, {"cat", "/app/config/app.yaml"}, {"sh", "-c", "ls /data | wc -l"},
	{"redis-cli", "info", "memory"}, {"psql", "-c", "select count(*) from jobs"}, {"python", "manage.py", "showmigrations"}}

func (g *Generator) benignExec(e *event) {
	d := g.execTarget(e)
	e.verb, e.code = "get", 101
	g.ref(e, "pods", "", "v1", e.namespace, d.pods[g.r.IntN(len(d.pods))], "exec")
	cmd := benignCommands[g.r.IntN(len(benignCommands))]
	g.uri = append(g.uri, '?')
	for _, a := range cmd {
		g.uri = append(g.uri, "command="...)
		g.uri = append(g.uri, queryEscape(a)...)
		g.uri = append(g.uri, '&')
	}
	g.uri = append(g.uri, "container="...)
	g.uri = append(g.uri, d.name...)
	g.uri = append(g.uri, "&stderr=true&stdout=true"...)
	e.duration = int64(1+g.r.IntN(20)) * 1e6
}

func (g *Generator) benignPortForward(e *event) {
	g.personPortForward(e)
}

func queryEscape(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			out = append(out, c)
		case c == ' ':
			out = append(out, '+')
		default:
			out = append(out, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		}
	}
	return string(out)
}
