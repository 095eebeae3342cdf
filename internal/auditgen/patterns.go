package auditgen

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
