package auditgen

import "strconv"

// pattern is one kind of traffic with its share of the log (weights are
// per 100,000 events).
type pattern struct {
	weight int
	fn     func(*Generator, *event)
}

func (g *Generator) allPatterns() []pattern {
	return []pattern{
		// Nodes and the control plane: the bulk of any audit log.
		{9000, (*Generator).nodeLease},
		{2500, (*Generator).leaderLease},
		{1200, (*Generator).apiserverLease},
		{2500, (*Generator).nodeStatus},
		{3000, (*Generator).kubeletGetPod},
		{3500, (*Generator).kubeletPodStatus},
		{2500, (*Generator).kubeletConfigMap},
		{2000, (*Generator).kubeletSecret},
		{2500, (*Generator).kubeletToken},
		{12000, (*Generator).controller},
		{1500, (*Generator).schedulerBind},
		{8000, (*Generator).createEvent},
		{3500, (*Generator).review},
		{2500, (*Generator).apiserverInternal},
		{5000, (*Generator).health},
		{3000, (*Generator).discovery},
		{700, (*Generator).watch},
		// Operators.
		{2000, (*Generator).prometheusScrape},
		{1500, (*Generator).certManagerWork},
		{1200, (*Generator).ingressWork},
		{3000, (*Generator).argocdWork},
		{1200, (*Generator).deployerWork},
		{60, (*Generator).scriptedSecretRead},
		// People with kubectl.
		{5000, (*Generator).personRead},
		{800, (*Generator).personLogs},
		{400, (*Generator).personSecret},
		{10, (*Generator).adminListAllSecrets},
		{80, (*Generator).personSecretDenied},
		{150, (*Generator).personExec},
		{40, (*Generator).personPortForward},
		{15, (*Generator).personAttach},
		{250, (*Generator).personApply},
		{50, (*Generator).rbacBinding},
		{100, (*Generator).selfReview},
		{30, (*Generator).badTokenRequest},
		{20, (*Generator).scannerProbe},
		{10, (*Generator).nodeProxy},
		{5, (*Generator).debugContainer},
	}
}

// ref sets the objectRef and writes the request path into the URI buffer.
func (g *Generator) ref(e *event, resource, group, version, ns, name, sub string) {
	e.resource, e.group, e.version, e.namespace, e.name, e.subresource = resource, group, version, ns, name, sub
	u := g.uri[:0]
	if group == "" {
		u = append(u, "/api/"...)
	} else {
		u = append(u, "/apis/"...)
		u = append(u, group...)
		u = append(u, '/')
	}
	u = append(u, version...)
	if ns != "" {
		u = append(u, "/namespaces/"...)
		u = append(u, ns...)
	}
	u = append(u, '/')
	u = append(u, resource...)
	if name != "" {
		u = append(u, '/')
		u = append(u, name...)
	}
	if sub != "" {
		u = append(u, '/')
		u = append(u, sub...)
	}
	g.uri = u
}

// query appends a query string to the URI.
func (g *Generator) query(q ...string) {
	g.uri = append(g.uri, '?')
	for _, s := range q {
		g.uri = append(g.uri, s...)
	}
}

// nonResource is a request without an objectRef (/healthz, /api ...).
func (g *Generator) nonResource(e *event, path string) {
	e.verb = "get"
	g.uri = append(g.uri[:0], path...)
}

// groupOf returns the API group of the resources the patterns use.
func groupOf(resource string) string {
	switch resource {
	case "deployments", "replicasets", "statefulsets", "daemonsets":
		return "apps"
	case "jobs", "cronjobs":
		return "batch"
	case "endpointslices":
		return "discovery.k8s.io"
	case "ingresses":
		return "networking.k8s.io"
	case "leases":
		return "coordination.k8s.io"
	}
	return ""
}

func (g *Generator) node() *node { return g.c.nodes[g.r.IntN(len(g.c.nodes))] }

func (g *Generator) appNS() *namespace { return g.c.apps[g.r.IntN(len(g.c.apps))] }

func (g *Generator) anyNS() *namespace { return g.c.namespaces[g.r.IntN(len(g.c.namespaces))] }

// pod picks a pod of an application namespace (or kube-system).
func (g *Generator) pod() (*namespace, *deployment, int) {
	ns := g.appNS()
	if g.r.IntN(10) == 0 {
		ns = g.c.system
	}
	d := ns.deploys[g.r.IntN(len(ns.deploys))]
	return ns, d, g.r.IntN(len(d.pods))
}

func (g *Generator) pick(s []string) string { return s[g.r.IntN(len(s))] }

func (g *Generator) person() *identity { return g.c.people[g.r.IntN(len(g.c.people))] }

func (g *Generator) personNS(p *identity) *namespace {
	return p.namespaces[g.r.IntN(len(p.namespaces))]
}

// failSometimes turns a request into a conflict (writes) or a miss
// (reads) with probability p.
func (g *Generator) failSometimes(e *event, p float64) {
	if !g.chance(p) {
		return
	}
	switch e.verb {
	case "update", "patch":
		e.code = 409
	case "get", "delete":
		e.code = 404
	}
}

func (g *Generator) nodeLease(e *event) {
	n := g.node()
	e.who, e.verb = n.id, "update"
	g.ref(e, "leases", "coordination.k8s.io", "v1", "kube-node-lease", n.name, "")
	g.query("timeout=10s")
	g.failSometimes(e, 0.003)
}

func (g *Generator) leaderLease(e *event) {
	e.who, e.verb = g.c.kcm, "update"
	name := "kube-controller-manager"
	if g.r.IntN(2) == 0 {
		e.who, name = g.c.scheduler, "kube-scheduler"
	}
	if g.r.IntN(3) == 0 {
		e.verb = "get"
	}
	g.ref(e, "leases", "coordination.k8s.io", "v1", "kube-system", name, "")
	g.query("timeout=5s")
}

func (g *Generator) apiserverLease(e *event) {
	e.who, e.verb = g.c.apiserver, "update"
	g.ref(e, "leases", "coordination.k8s.io", "v1", "kube-system", "apiserver-6v2xpkcqnpm3ylrp2mgkdkpjha", "")
}

func (g *Generator) nodeStatus(e *event) {
	n := g.node()
	e.who, e.verb, e.level = n.id, "patch", "Request"
	g.ref(e, "nodes", "", "v1", "", n.name, "status")
	g.query("timeout=10s")
	g.nodeStatusPatch(e)
}

func (g *Generator) kubeletGetPod(e *event) {
	ns, d, i := g.pod()
	e.who, e.verb = g.node().id, "get"
	g.ref(e, "pods", "", "v1", ns.name, d.pods[i], "")
	g.failSometimes(e, 0.02)
}

func (g *Generator) kubeletPodStatus(e *event) {
	ns, d, i := g.pod()
	e.who, e.verb, e.level = g.node().id, "patch", "Request"
	g.ref(e, "pods", "", "v1", ns.name, d.pods[i], "status")
	g.podStatusPatch(e, d, i)
	g.failSometimes(e, 0.005)
}

func (g *Generator) kubeletConfigMap(e *event) {
	ns := g.appNS()
	e.who = g.node().id
	cm := g.pick(ns.configmaps)
	if g.r.IntN(2) == 0 {
		e.verb = "get"
		g.ref(e, "configmaps", "", "v1", ns.name, cm, "")
		return
	}
	e.verb = "list"
	g.ref(e, "configmaps", "", "v1", ns.name, "", "")
	g.query("fieldSelector=metadata.name%3D", cm, "&limit=500&resourceVersion=0")
}

func (g *Generator) kubeletSecret(e *event) {
	ns := g.appNS()
	e.who = g.node().id
	s := g.pick(ns.secrets)
	if g.r.IntN(2) == 0 {
		e.verb = "get"
		g.ref(e, "secrets", "", "v1", ns.name, s, "")
		return
	}
	e.verb = "list"
	g.ref(e, "secrets", "", "v1", ns.name, "", "")
	g.query("fieldSelector=metadata.name%3D", s, "&limit=500&resourceVersion=0")
}

func (g *Generator) kubeletToken(e *event) {
	ns, d, _ := g.pod()
	e.who, e.verb, e.code = g.node().id, "create", 201
	g.ref(e, "serviceaccounts", "", "v1", ns.name, d.name, "token")
}

func (g *Generator) controller(e *event) {
	ctl := g.c.controllers[g.r.IntN(len(g.c.controllers))]
	e.who = ctl
	ns := g.appNS()
	d := ns.deploys[g.r.IntN(len(ns.deploys))]
	switch g.r.IntN(9) {
	case 0, 8:
		e.verb, e.level = "update", "RequestResponse"
		g.ref(e, "replicasets", "apps", "v1", ns.name, d.name+"-"+d.hash, "status")
		g.replicaSetStatus(e, ns, d)
	case 1:
		e.verb = "update"
		g.ref(e, "endpointslices", "discovery.k8s.io", "v1", ns.name, d.name+"-"+randNameFast(g), "")
	case 2:
		e.verb = "update"
		g.ref(e, "deployments", "apps", "v1", ns.name, d.name, "status")
	case 3:
		e.verb = "get"
		g.ref(e, "nodes", "", "v1", "", g.node().name, "")
	case 4:
		e.verb = "list"
		res := g.pick([]string{"pods", "replicasets", "jobs", "resourcequotas", "limitranges"})
		g.ref(e, res, groupOf(res), "v1", ns.name, "", "")
		g.query("limit=500&resourceVersion=0")
	case 5:
		e.verb = "get"
		g.ref(e, "deployments", "apps", "v1", ns.name, d.name, "scale")
	case 6:
		e.verb = "update"
		g.ref(e, "endpoints", "", "v1", ns.name, d.name, "")
	default:
		e.verb = "get"
		g.ref(e, "configmaps", "", "v1", ns.name, "kube-root-ca.crt", "")
	}
	g.failSometimes(e, 0.01)
}

// randNameFast is randName on the generator's stream without allocating
// more than the result.
func randNameFast(g *Generator) string {
	var b [5]byte
	for i := range b {
		b[i] = nameAlphabet[g.r.IntN(len(nameAlphabet))]
	}
	return string(b[:])
}

func (g *Generator) schedulerBind(e *event) {
	ns, d, i := g.pod()
	e.who, e.verb, e.code = g.c.scheduler, "create", 201
	g.ref(e, "pods", "", "v1", ns.name, d.pods[i], "binding")
}

func (g *Generator) createEvent(e *event) {
	ns, d, i := g.pod()
	e.verb, e.code = "create", 201
	name := d.pods[i] + "." + randHex16(g)
	switch g.r.IntN(4) {
	case 0:
		e.who = g.c.scheduler
		g.ref(e, "events", "events.k8s.io", "v1", ns.name, name, "")
	case 1:
		e.who = g.c.controllers[g.r.IntN(len(g.c.controllers))]
		g.ref(e, "events", "", "v1", ns.name, name, "")
	default:
		e.who = g.node().id
		g.ref(e, "events", "", "v1", ns.name, name, "")
		if g.r.IntN(3) == 0 {
			e.verb, e.code = "patch", 200
		}
	}
}

func randHex16(g *Generator) string {
	v := g.r.Uint64()
	var b [16]byte
	for i := range b {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

func (g *Generator) review(e *event) {
	e.verb, e.code = "create", 201
	switch g.r.IntN(3) {
	case 0:
		e.who = g.c.metricsServer
		g.ref(e, "subjectaccessreviews", "authorization.k8s.io", "v1", "", "", "")
	case 1:
		e.who = g.c.prometheus
		g.ref(e, "tokenreviews", "authentication.k8s.io", "v1", "", "", "")
	default:
		e.who = g.node().id
		g.ref(e, "subjectaccessreviews", "authorization.k8s.io", "v1", "", "", "")
	}
}

func (g *Generator) apiserverInternal(e *event) {
	e.who, e.verb = g.c.apiserver, "get"
	switch g.r.IntN(4) {
	case 0:
		g.ref(e, "endpoints", "", "v1", "default", "kubernetes", "")
	case 1:
		g.ref(e, "endpointslices", "discovery.k8s.io", "v1", "default", "kubernetes", "")
	case 2:
		g.ref(e, "namespaces", "", "v1", "", g.anyNS().name, "")
	default:
		e.verb = "list"
		g.ref(e, g.pick([]string{"flowschemas", "prioritylevelconfigurations"}), "flowcontrol.apiserver.k8s.io", "v1", "", "", "")
		g.query("limit=500&resourceVersion=0")
	}
}

func (g *Generator) health(e *event) {
	e.who = g.c.probe
	if g.r.IntN(2) == 0 {
		e.who = g.c.anonymous
	}
	g.nonResource(e, g.pick([]string{"/livez", "/readyz", "/healthz", "/readyz?verbose"}))
}

func (g *Generator) discovery(e *event) {
	switch g.r.IntN(4) {
	case 0:
		e.who = g.person()
	case 1:
		e.who = g.c.argocd
	case 2:
		e.who = g.c.controllers[5] // the garbage collector rediscovers resources
	default:
		e.who = g.c.deployer
	}
	g.nonResource(e, g.pick([]string{"/api?timeout=32s", "/apis?timeout=32s", "/apis/apps/v1?timeout=32s", "/version?timeout=32s", "/openapi/v3?timeout=32s"}))
	if g.r.IntN(4) == 0 {
		e.code = 304
	}
}

// watch is a long-running request: ResponseStarted now, ResponseComplete
// when its timeout ends.
func (g *Generator) watch(e *event) {
	e.verb = "watch"
	secs := 300 + g.r.IntN(300)
	timeout := "&timeout=" + strconv.Itoa(secs/60) + "m" + strconv.Itoa(secs%60) + "s&timeoutSeconds=" + strconv.Itoa(secs) + "&watch=true"
	rv := strconv.FormatUint(g.rv-g.r.Uint64N(5000), 10)
	switch g.r.IntN(10) {
	case 0, 1, 2:
		n := g.node()
		e.who = n.id
		g.ref(e, "pods", "", "v1", "", "", "")
		g.query("allowWatchBookmarks=true&fieldSelector=spec.nodeName%3D", n.name, "&resourceVersion=", rv, timeout)
	case 3, 4:
		e.who = g.c.controllers[g.r.IntN(len(g.c.controllers))]
		res := g.pick([]string{"pods", "replicasets", "deployments", "endpointslices", "namespaces", "nodes", "services", "jobs"})
		g.ref(e, res, groupOf(res), "v1", "", "", "")
		g.query("allowWatchBookmarks=true&resourceVersion=", rv, timeout)
	case 5:
		e.who = g.c.kubeProxy
		if g.r.IntN(2) == 0 {
			e.who = g.c.coredns
		}
		g.ref(e, "endpointslices", "discovery.k8s.io", "v1", "", "", "")
		g.query("allowWatchBookmarks=true&labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name&resourceVersion=", rv, timeout)
	case 6:
		e.who = g.c.prometheus
		g.ref(e, g.pick([]string{"pods", "endpoints", "services"}), "", "v1", g.appNS().name, "", "")
		g.query("allowWatchBookmarks=true&resourceVersion=", rv, timeout)
	case 7:
		// Ingress controllers and cert-manager watch secrets in every
		// namespace: secret reads by service accounts outside the
		// control plane.
		e.who = g.c.ingress
		if g.r.IntN(2) == 0 {
			e.who = g.c.certManager
		}
		g.ref(e, "secrets", "", "v1", "", "", "")
		g.query("allowWatchBookmarks=true&resourceVersion=", rv, timeout)
	default:
		e.who = g.c.argocd
		res := g.pick([]string{"deployments", "services", "configmaps", "ingresses"})
		g.ref(e, res, groupOf(res), "v1", "", "", "")
		g.query("allowWatchBookmarks=true&resourceVersion=", rv, timeout)
	}
	e.duration = int64(secs) * 1e6
}

func (g *Generator) prometheusScrape(e *event) {
	e.who = g.c.prometheus
	if g.r.IntN(5) == 0 {
		e.verb = "get"
		g.ref(e, "nodes", "", "v1", "", g.node().name, "proxy")
		g.uri = append(g.uri, "/metrics"...)
		return
	}
	e.verb = "list"
	res := g.pick([]string{"pods", "endpoints", "services", "endpointslices"})
	g.ref(e, res, groupOf(res), "v1", g.appNS().name, "", "")
	g.query("limit=500&resourceVersion=0")
}

func (g *Generator) certManagerWork(e *event) {
	e.who = g.c.certManager
	ns, d, _ := g.pod()
	switch g.r.IntN(10) {
	case 0, 1, 2:
		e.verb = "get"
		g.ref(e, "secrets", "", "v1", ns.name, d.name+"-tls", "")
		g.failSometimes(e, 0.05)
	case 3, 4:
		e.verb = "update"
		g.ref(e, "certificaterequests", "cert-manager.io", "v1", ns.name, d.name+"-tls-1", "status")
	case 5:
		e.verb = "update"
		g.ref(e, "leases", "coordination.k8s.io", "v1", "kube-system", "cert-manager-controller", "")
	default:
		e.verb = "get"
		g.ref(e, "certificates", "cert-manager.io", "v1", ns.name, d.name+"-tls", "")
	}
}

func (g *Generator) ingressWork(e *event) {
	e.who = g.c.ingress
	ns, d, _ := g.pod()
	switch g.r.IntN(10) {
	case 0:
		e.verb = "get"
		g.ref(e, "secrets", "", "v1", ns.name, d.name+"-tls", "")
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

func (g *Generator) argocdWork(e *event) {
	e.who = g.c.argocd
	ns := g.appNS()
	d := ns.deploys[g.r.IntN(len(ns.deploys))]
	switch g.r.IntN(20) {
	case 0:
		e.verb, e.level = "patch", "RequestResponse"
		g.ref(e, "deployments", "apps", "v1", ns.name, d.name, "")
		g.query("fieldManager=argocd-controller&force=true")
		g.deploymentPatch(e, ns, d, "argocd-controller")
	case 1, 2, 3, 4, 5:
		e.verb = "list"
		res := g.pick([]string{"deployments", "services", "configmaps", "ingresses"})
		g.ref(e, res, groupOf(res), "v1", ns.name, "", "")
		g.query("limit=500")
	default:
		e.verb = "get"
		switch g.r.IntN(3) {
		case 0:
			g.ref(e, "deployments", "apps", "v1", ns.name, d.name, "")
		case 1:
			g.ref(e, "services", "", "v1", ns.name, d.name, "")
		default:
			g.ref(e, "configmaps", "", "v1", ns.name, d.name+"-config", "")
		}
		g.failSometimes(e, 0.02)
	}
}

func (g *Generator) deployerWork(e *event) {
	e.who = g.c.deployer
	ns := g.c.apps[len(g.c.apps)-1] // ci
	switch g.r.IntN(20) {
	case 0:
		target := g.c.apps[6+g.r.IntN(2)] // prod or staging
		d := target.deploys[g.r.IntN(len(target.deploys))]
		e.verb, e.level = "patch", "RequestResponse"
		g.ref(e, "deployments", "apps", "v1", target.name, d.name, "")
		g.query("fieldManager=kubectl-set")
		g.deploymentPatch(e, target, d, "kubectl-set")
	case 1:
		e.verb = "get"
		g.ref(e, "secrets", "", "v1", ns.name, "regcred", "")
	default:
		e.verb = "list"
		res := g.pick([]string{"configmaps", "deployments", "services"})
		g.ref(e, res, groupOf(res), "v1", ns.name, "", "")
		g.query("limit=500&timeout=8s")
	}
}

func (g *Generator) scriptedSecretRead(e *event) {
	e.who, e.verb = g.c.scripted, "get"
	ns := g.appNS()
	g.ref(e, "secrets", "", "v1", ns.name, g.pick(ns.secrets), "")
}

var personResources = []struct{ resource, group string }{
	{"pods", ""}, {"pods", ""}, {"pods", ""}, {"deployments", "apps"}, {"services", ""},
	{"configmaps", ""}, {"events", ""}, {"replicasets", "apps"}, {"ingresses", "networking.k8s.io"},
	{"jobs", "batch"}, {"persistentvolumeclaims", ""},
}

func (g *Generator) personRead(e *event) {
	p := g.person()
	if g.r.IntN(10) == 0 {
		p = g.c.admin
	}
	e.who = p
	ns := g.personNS(p)
	if g.r.IntN(30) == 0 {
		// Outside the person's namespaces: forbidden unless admin.
		ns = g.appNS()
		if p != g.c.admin && ns != p.namespaces[0] {
			e.code = 403
		}
	}
	r := personResources[g.r.IntN(len(personResources))]
	if g.r.IntN(3) == 0 {
		e.verb = "list"
		g.ref(e, r.resource, r.group, "v1", ns.name, "", "")
		g.query("limit=500&timeout=32s")
		return
	}
	e.verb = "get"
	d := ns.deploys[g.r.IntN(len(ns.deploys))]
	name := d.name
	if r.resource == "pods" {
		name = d.pods[g.r.IntN(len(d.pods))]
	}
	g.ref(e, r.resource, r.group, "v1", ns.name, name, "")
	g.query("timeout=32s")
	if e.code == 0 {
		g.failSometimes(e, 0.04)
	}
}

func (g *Generator) personLogs(e *event) {
	p := g.person()
	ns := g.personNS(p)
	d := ns.deploys[g.r.IntN(len(ns.deploys))]
	e.who, e.verb = p, "get"
	g.ref(e, "pods", "", "v1", ns.name, d.pods[g.r.IntN(len(d.pods))], "log")
	g.query("container=", d.name, "&tailLines=200&timeout=32s")
}

func (g *Generator) personSecret(e *event) {
	p := g.person()
	ns := g.personNS(p)
	e.who = p
	if g.r.IntN(3) == 0 {
		e.verb = "list"
		g.ref(e, "secrets", "", "v1", ns.name, "", "")
		g.query("limit=500&timeout=32s")
		return
	}
	e.verb = "get"
	g.ref(e, "secrets", "", "v1", ns.name, g.pick(ns.secrets), "")
	g.query("timeout=32s")
}

func (g *Generator) adminListAllSecrets(e *event) {
	e.who, e.verb = g.c.admin, "list"
	g.ref(e, "secrets", "", "v1", "", "", "")
	g.query("limit=500&timeout=32s")
}

func (g *Generator) personSecretDenied(e *event) {
	p := g.person()
	ns := g.c.apps[6] // prod
	if ns == p.namespaces[0] {
		ns = g.c.system
	}
	e.who, e.verb, e.code = p, "get", 403
	g.ref(e, "secrets", "", "v1", ns.name, g.pick(ns.secrets), "")
	g.query("timeout=32s")
}

func (g *Generator) execTarget(e *event) *deployment {
	p := g.person()
	if g.r.IntN(4) == 0 {
		p = g.c.admin
	}
	e.who = p
	ns := g.personNS(p)
	d := ns.deploys[g.r.IntN(len(ns.deploys))]
	e.namespace = ns.name
	return d
}

func (g *Generator) personExec(e *event) {
	d := g.execTarget(e)
	e.verb, e.code = "get", 101
	g.ref(e, "pods", "", "v1", e.namespace, d.pods[g.r.IntN(len(d.pods))], "exec")
	// Harmless commands dominate; the last two (a token read, kubectl cp)
	// are rarer.
	i := g.r.IntN(len(execCommands) - 2)
	if g.r.IntN(20) == 0 {
		i = len(execCommands) - 2 + g.r.IntN(2)
	}
	g.query(execCommands[i], "&container=", d.name, "&stderr=true&stdout=true")
	if execCommands[i] == "command=%2Fbin%2Fsh" || execCommands[i] == "command=bash" {
		g.uri = append(g.uri, "&stdin=true&tty=true"...)
	}
	e.duration = int64(1+g.r.IntN(300)) * 1e6
}

func (g *Generator) personPortForward(e *event) {
	d := g.execTarget(e)
	e.verb, e.code = "get", 101
	g.ref(e, "pods", "", "v1", e.namespace, d.pods[g.r.IntN(len(d.pods))], "portforward")
	e.duration = int64(5+g.r.IntN(600)) * 1e6
}

func (g *Generator) personAttach(e *event) {
	d := g.execTarget(e)
	e.verb, e.code = "get", 101
	g.ref(e, "pods", "", "v1", e.namespace, d.pods[g.r.IntN(len(d.pods))], "attach")
	g.query("container=", d.name, "&stderr=true&stdout=true")
	e.duration = int64(1+g.r.IntN(120)) * 1e6
}

func (g *Generator) personApply(e *event) {
	p := g.person()
	ns := g.personNS(p)
	d := ns.deploys[g.r.IntN(len(ns.deploys))]
	e.who, e.verb, e.level = p, "patch", "RequestResponse"
	g.ref(e, "deployments", "apps", "v1", ns.name, d.name, "")
	g.query("fieldManager=kubectl-client-side-apply&fieldValidation=Strict&timeout=32s")
	g.deploymentPatch(e, ns, d, "kubectl-client-side-apply")
	g.failSometimes(e, 0.03)
}

func (g *Generator) rbacBinding(e *event) {
	e.who, e.verb, e.level, e.code = g.c.admin, "create", "RequestResponse", 201
	if g.r.IntN(2) == 0 {
		e.who = g.c.people[4+g.r.IntN(2)] // the SREs
	}
	ns := g.appNS()
	subject := g.person()
	role := "view"
	switch x := g.r.IntN(100); {
	case x < 5:
		role = "cluster-admin"
	case x < 15:
		role = "admin"
	case x < 55:
		role = "edit"
	}
	name := subject.username + "-" + role
	if role == "cluster-admin" {
		g.ref(e, "clusterrolebindings", "rbac.authorization.k8s.io", "v1", "", name, "")
	} else {
		g.ref(e, "rolebindings", "rbac.authorization.k8s.io", "v1", ns.name, name, "")
	}
	g.query("fieldManager=kubectl-create&fieldValidation=Strict&timeout=32s")
	g.roleBinding(e, subject.username, role)
}

func (g *Generator) selfReview(e *event) {
	e.who, e.verb, e.code = g.person(), "create", 201
	res := "selfsubjectaccessreviews"
	if g.r.IntN(4) == 0 {
		res = "selfsubjectrulesreviews"
	}
	g.ref(e, res, "authorization.k8s.io", "v1", "", "", "")
	g.query("timeout=32s")
}

func (g *Generator) badTokenRequest(e *event) {
	e.who, e.verb, e.code, e.stage = g.c.badToken, "list", 401, "ResponseStarted"
	g.ref(e, "secrets", "", "v1", "kube-system", "", "")
}

func (g *Generator) scannerProbe(e *event) {
	e.who, e.verb, e.code = g.c.scanner, "list", 403
	if g.r.IntN(2) == 0 {
		g.ref(e, "secrets", "", "v1", "kube-system", "", "")
	} else {
		g.ref(e, "pods", "", "v1", "", "", "")
	}
}

func (g *Generator) nodeProxy(e *event) {
	e.who, e.verb = g.c.admin, "get"
	g.ref(e, "nodes", "", "v1", "", g.node().name, "proxy")
	g.uri = append(g.uri, g.pick([]string{"/configz", "/runningpods/", "/pods"})...)
}

func (g *Generator) debugContainer(e *event) {
	d := g.execTarget(e)
	e.verb = "patch"
	g.ref(e, "pods", "", "v1", e.namespace, d.pods[g.r.IntN(len(d.pods))], "ephemeralcontainers")
}
