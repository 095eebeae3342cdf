package auditgen

// The traffic of people and their scripts.

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
