package auditgen

import "strconv"

// The traffic of nodes, the control plane, controllers and add-ons.

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
