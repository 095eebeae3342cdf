package auditgen

import (
	"fmt"
	"strconv"
)

// The benign day's multi-request actions: rollouts, jobs, Helm installs and
// upgrades, operators starting, nodes joining and leaving.

// podBody is a pod as a controller creates it from a template.
func podBody(ns, generateName, ownerKind, owner, sa string, spec map[string]any) map[string]any {
	return map[string]any{"kind": "Pod", "apiVersion": "v1",
		"metadata": map[string]any{"generateName": generateName, "namespace": ns, "creationTimestamp": nil,
			"ownerReferences": []any{map[string]any{"apiVersion": "apps/v1", "kind": ownerKind, "name": owner, "controller": true, "blockOwnerDeletion": true}}},
		"spec":   withDefaults(spec, sa),
		"status": map[string]any{}}
}

func withDefaults(spec map[string]any, sa string) map[string]any {
	out := map[string]any{"restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
		"serviceAccountName": sa, "securityContext": map[string]any{}, "schedulerName": "default-scheduler", "enableServiceLinks": true}
	for k, v := range spec {
		out[k] = v
	}
	return out
}

func appContainer(name, image string, extra map[string]any) map[string]any {
	c := map[string]any{"name": name, "image": image, "resources": map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}},
		"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
		"securityContext": map[string]any{"allowPrivilegeEscalation": false, "runAsNonRoot": true, "capabilities": map[string]any{"drop": []any{"ALL"}}}}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// rolloutPods queues a new ReplicaSet for a deployment and its pods.
func (g *Generator) rolloutPods(ns *namespace, d *deployment, image string, replicas int) {
	hash := randHex(g.r, 10)
	rsName := d.name + "-" + hash
	spec := map[string]any{"containers": []any{appContainer(d.name, image, nil)}}
	rs := map[string]any{"kind": "ReplicaSet", "apiVersion": "apps/v1",
		"metadata": map[string]any{"name": rsName, "namespace": ns.name,
			"ownerReferences": []any{map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": d.name, "controller": true}}},
		"spec": map[string]any{"replicas": replicas, "template": map[string]any{"spec": withDefaults(spec, d.name)}}}
	s := g.step(g.controllerID("deployment-controller"), "create", "replicasets", ns.name, rsName, "", 201)
	body(s, "Request", rs, nil)
	g.push(s)
	for range replicas {
		name := rsName + "-" + randName(g.r, 5)
		p := podBody(ns.name, rsName+"-", "ReplicaSet", rsName, d.name, spec)
		s := g.step(g.controllerID("replicaset-controller"), "create", "pods", ns.name, name, "", 201)
		body(s, "RequestResponse", p, p)
		g.push(s)
		g.push(g.step(g.c.scheduler, "create", "pods", ns.name, name, "binding", 201))
	}
}

// controllerID returns a controller-manager controller's identity.
func (g *Generator) controllerID(name string) *identity {
	user := "system:serviceaccount:kube-system:" + name
	for _, c := range g.c.controllers {
		if c.username == user {
			return c
		}
	}
	b := g.cast()
	if id := b.controllers[name]; id != nil {
		return id
	}
	id := newIdentity(identityOpts{username: user, uid: randUUID(g.r),
		groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
		ip:     "10.0.0.10", agent: componentAgent("kube-controller-manager") + "/" + user,
		reason: fmt.Sprintf("RBAC: allowed by ClusterRoleBinding %q of ClusterRole %q to ServiceAccount %q", "system:controller:"+name, "system:controller:"+name, name+"/kube-system")})
	b.controllers[name] = id
	return id
}

// rollout is a CI deploy: kubectl set image, then the controllers roll the
// pods.
func (g *Generator) rollout(e *event) {
	target := g.c.apps[6+g.r.IntN(2)]
	who := g.c.deployer
	if g.r.IntN(2) == 0 {
		target = g.appNS()
		who = g.c.argocd
	}
	d := target.deploys[g.r.IntN(len(target.deploys))]
	s := g.step(who, "patch", "deployments", target.name, d.name, "", 200)
	g.query("fieldManager=kubectl-set")
	g.deploymentPatch(s, target, d, "kubectl-set")
	s.level = "RequestResponse"
	g.push(s)
	image := d.image[:indexColon(d.image)] + ":1." + strconv.Itoa(g.r.IntN(30))
	g.rolloutPods(target, d, image, 1+g.r.IntN(3))
	g.play(e)
}

func jobBody(ns, name, image string, command []any, owner string) map[string]any {
	md := map[string]any{"name": name, "namespace": ns}
	if owner != "" {
		md["ownerReferences"] = []any{map[string]any{"apiVersion": "batch/v1", "kind": "CronJob", "name": owner, "controller": true}}
	}
	return map[string]any{"kind": "Job", "apiVersion": "batch/v1", "metadata": md,
		"spec": map[string]any{"backoffLimit": 2, "ttlSecondsAfterFinished": 600, "template": map[string]any{
			"spec": withDefaults(map[string]any{"restartPolicy": "Never", "containers": []any{appContainer("job", image, map[string]any{"command": command})}}, "default")}}}
}

// jobPods queues a job's pod, its completion and its clean-up.
func (g *Generator) jobPods(ns, job, image string, command []any) {
	spec := map[string]any{"restartPolicy": "Never", "containers": []any{appContainer("job", image, map[string]any{"command": command})}}
	p := podBody(ns, job+"-", "Job", job, "default", spec)
	name := job + "-" + randName(g.r, 5)
	s := g.step(g.controllerID("job-controller"), "create", "pods", ns, name, "", 201)
	body(s, "RequestResponse", p, p)
	g.push(s)
	g.push(g.step(g.c.scheduler, "create", "pods", ns, name, "binding", 201))
	g.push(g.step(g.controllerID("job-controller"), "update", "jobs", ns, job, "status", 200))
	g.push(g.step(g.controllerID("ttl-after-finished-controller"), "delete", "jobs", ns, job, "", 200))
}

func (g *Generator) migrationJob(e *event) {
	ns := g.c.apps[6+g.r.IntN(2)]
	d := ns.deploys[g.r.IntN(len(ns.deploys))]
	job := d.name + "-migrate-" + randName(g.r, 5)
	cmd := []any{"python", "manage.py", "migrate", "--noinput"}
	s := g.step(g.c.deployer, "create", "jobs", ns.name, job, "", 201)
	body(s, "Request", jobBody(ns.name, job, d.image, cmd, ""), nil)
	g.push(s)
	g.jobPods(ns.name, job, d.image, cmd)
	g.play(e)
}

func (g *Generator) cronRun(e *event) {
	ns := g.appNS()
	cron := "nightly-report"
	job := cron + "-" + strconv.FormatInt(g.now/60e6, 10)
	image := registry + "/" + ns.name + "/reports:2.4.1"
	cmd := []any{"/app/report", "--since", "24h"}
	s := g.step(g.controllerID("cronjob-controller"), "create", "jobs", ns.name, job, "", 201)
	body(s, "Request", jobBody(ns.name, job, image, cmd, cron), nil)
	g.push(s)
	g.jobPods(ns.name, job, image, cmd)
	g.play(e)
}

var charts = []struct{ name, image string }{
	{"redis", "docker.io/bitnami/redis:7.2.5"}, {"grafana", "docker.io/grafana/grafana:11.1.0"},
	{"podinfo", "ghcr.io/stefanprodan/podinfo:6.7.0"}, {"memcached", "docker.io/bitnami/memcached:1.6.29"},
}

// helmInstall is helm install of an application chart by an SRE: the
// release record, its objects, then the controllers roll the pods.
func (g *Generator) helmInstall(e *event) {
	who := g.cast().helm[g.r.IntN(2)]
	ns := g.c.apps[g.r.IntN(len(g.c.apps))]
	ch := charts[g.r.IntN(len(charts))]
	rel := ch.name + "-" + randName(g.r, 4)
	s := g.step(who, "list", "secrets", ns.name, "", "", 200)
	g.query("labelSelector=name%3D", rel, "%2Cowner%3Dhelm")
	g.push(s)
	g.push(g.step(who, "create", "secrets", ns.name, "sh.helm.release.v1."+rel+".v1", "", 201))
	sa := map[string]any{"kind": "ServiceAccount", "apiVersion": "v1", "metadata": map[string]any{"name": rel, "namespace": ns.name}}
	s = g.step(who, "create", "serviceaccounts", ns.name, rel, "", 201)
	body(s, "Request", sa, nil)
	g.push(s)
	g.push(g.step(who, "create", "configmaps", ns.name, rel+"-config", "", 201))
	svc := map[string]any{"kind": "Service", "apiVersion": "v1", "metadata": map[string]any{"name": rel, "namespace": ns.name},
		"spec": map[string]any{"type": "ClusterIP", "ports": []any{map[string]any{"port": 80, "targetPort": "http"}}}}
	s = g.step(who, "create", "services", ns.name, rel, "", 201)
	body(s, "Request", svc, nil)
	g.push(s)
	role := map[string]any{"kind": "Role", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": map[string]any{"name": rel, "namespace": ns.name},
		"rules": []any{map[string]any{"apiGroups": []any{""}, "resources": []any{"configmaps", "endpoints"}, "verbs": []any{"get", "list", "watch"}}}}
	s = g.step(who, "create", "roles", ns.name, rel, "", 201)
	body(s, "RequestResponse", role, role)
	g.push(s)
	rb := map[string]any{"kind": "RoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": map[string]any{"name": rel, "namespace": ns.name},
		"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": rel, "namespace": ns.name}},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": rel}}
	s = g.step(who, "create", "rolebindings", ns.name, rel, "", 201)
	body(s, "RequestResponse", rb, rb)
	g.push(s)
	d := &deployment{name: rel, image: ch.image}
	spec := map[string]any{"containers": []any{appContainer(ch.name, ch.image, map[string]any{"ports": []any{map[string]any{"name": "http", "containerPort": 8080}}})}}
	dep := map[string]any{"kind": "Deployment", "apiVersion": "apps/v1", "metadata": map[string]any{"name": rel, "namespace": ns.name},
		"spec": map[string]any{"replicas": 2, "template": map[string]any{"spec": withDefaults(spec, rel)}}}
	s = g.step(who, "create", "deployments", ns.name, rel, "", 201)
	body(s, "RequestResponse", dep, dep)
	g.push(s)
	ing := map[string]any{"kind": "Ingress", "apiVersion": "networking.k8s.io/v1", "metadata": map[string]any{"name": rel, "namespace": ns.name},
		"spec": map[string]any{"ingressClassName": "nginx",
			"tls":   []any{map[string]any{"hosts": []any{rel + ".apps.example.com"}, "secretName": rel + "-tls"}},
			"rules": []any{map[string]any{"host": rel + ".apps.example.com"}}}}
	s = g.step(who, "create", "ingresses", ns.name, rel, "", 201)
	body(s, "Request", ing, nil)
	g.push(s)
	g.push(g.step(who, "update", "secrets", ns.name, "sh.helm.release.v1."+rel+".v1", "", 200))
	g.rolloutPods(ns, d, ch.image, 2)
	g.play(e)
}

func (g *Generator) helmUpgrade(e *event) {
	who := g.cast().helm[g.r.IntN(2)]
	ns := g.appNS()
	d := ns.deploys[g.r.IntN(len(ns.deploys))]
	s := g.step(who, "list", "secrets", ns.name, "", "", 200)
	g.query("labelSelector=name%3D", d.name, "%2Cowner%3Dhelm")
	g.push(s)
	v := 2 + g.r.IntN(20)
	g.push(g.step(who, "create", "secrets", ns.name, "sh.helm.release.v1."+d.name+".v"+strconv.Itoa(v), "", 201))
	s = g.step(who, "patch", "deployments", ns.name, d.name, "", 200)
	g.deploymentPatch(s, ns, d, "helm")
	s.level = "RequestResponse"
	g.push(s)
	g.push(g.step(who, "update", "secrets", ns.name, "sh.helm.release.v1."+d.name+".v"+strconv.Itoa(v-1), "", 200))
	g.rolloutPods(ns, d, d.image, 1+g.r.IntN(2))
	g.play(e)
}

// operatorRestart: the cluster autoscaler starts and fills its informer
// caches: a list of each kind at resourceVersion 0, then watches.
func (g *Generator) operatorRestart(e *event) {
	a := g.cast().autoscaler
	for _, r := range []string{"pods", "nodes", "services", "namespaces", "persistentvolumes", "persistentvolumeclaims",
		"replicationcontrollers", "replicasets", "statefulsets", "jobs", "poddisruptionbudgets", "csinodes", "storageclasses"} {
		s := g.step(a, "list", r, "", "", "", 200)
		g.query("limit=500&resourceVersion=0")
		g.push(s)
	}
	g.play(e)
}

// nodeAgents are the DaemonSets every node runs, with what they need of it.
var nodeAgents = []struct {
	name, image, sa string
	spec            map[string]any
}{
	{"kube-proxy", "registry.k8s.io/kube-proxy:v1.34.4", "kube-proxy", map[string]any{"hostNetwork": true,
		"volumes": []any{map[string]any{"name": "xtables-lock", "hostPath": map[string]any{"path": "/run/xtables.lock", "type": "FileOrCreate"}},
			map[string]any{"name": "lib-modules", "hostPath": map[string]any{"path": "/lib/modules"}}},
		"containers": []any{map[string]any{"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.34.4",
			"command": []any{"/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf"}, "securityContext": map[string]any{"privileged": true}}}}},
	{"calico-node", "quay.io/calico/node:v3.28.1", "calico-node", map[string]any{"hostNetwork": true,
		"volumes": []any{map[string]any{"name": "var-run-calico", "hostPath": map[string]any{"path": "/var/run/calico"}},
			map[string]any{"name": "cni-bin-dir", "hostPath": map[string]any{"path": "/opt/cni/bin"}}},
		"initContainers": []any{map[string]any{"name": "install-cni", "image": "quay.io/calico/cni:v3.28.1", "command": []any{"/opt/cni/bin/install"}, "securityContext": map[string]any{"privileged": true}}},
		"containers":     []any{map[string]any{"name": "calico-node", "image": "quay.io/calico/node:v3.28.1", "securityContext": map[string]any{"privileged": true}}}}},
	{"node-exporter", "quay.io/prometheus/node-exporter:v1.8.2", "node-exporter", map[string]any{"hostNetwork": true, "hostPID": true,
		"volumes": []any{map[string]any{"name": "proc", "hostPath": map[string]any{"path": "/proc"}}, map[string]any{"name": "sys", "hostPath": map[string]any{"path": "/sys"}},
			map[string]any{"name": "root", "hostPath": map[string]any{"path": "/"}}},
		"containers": []any{map[string]any{"name": "node-exporter", "image": "quay.io/prometheus/node-exporter:v1.8.2",
			"args": []any{"--path.procfs=/host/proc", "--path.sysfs=/host/sys", "--path.rootfs=/host/root"}}}}},
	{"fluent-bit", "cr.fluentbit.io/fluent/fluent-bit:3.1.4", "fluent-bit", map[string]any{
		"volumes":    []any{map[string]any{"name": "varlog", "hostPath": map[string]any{"path": "/var/log"}}},
		"containers": []any{map[string]any{"name": "fluent-bit", "image": "cr.fluentbit.io/fluent/fluent-bit:3.1.4"}}}},
}

// nodeJoin: the autoscaler added a machine; it bootstraps its certificate,
// registers, and the node agents' DaemonSets put their pods on it.
func (g *Generator) nodeJoin(e *event) {
	b := g.cast()
	b.joined++
	ip := fmt.Sprintf("10.0.9.%d", 10+b.joined%240)
	name := "ip-10-0-9-" + strconv.Itoa(10+b.joined%240) + ".ec2.internal"
	node := newIdentity(identityOpts{username: "system:node:" + name, groups: []string{"system:nodes", "system:authenticated"},
		extra: credIDPrefix + randHex(g.r, 64) + `"]`, ip: ip, agent: componentAgent("kubelet")})
	csr := "csr-" + randName(g.r, 5)
	g.push(g.step(b.bootstrap, "create", "certificatesigningrequests", "", csr, "", 201))
	cc := g.controllerID("certificate-controller")
	g.push(g.step(cc, "update", "certificatesigningrequests", "", csr, "approval", 200))
	g.push(g.step(cc, "update", "certificatesigningrequests", "", csr, "status", 200))
	g.push(g.step(node, "create", "nodes", "", name, "", 201))
	g.push(g.step(node, "create", "leases", "kube-node-lease", name, "", 201))
	for _, a := range nodeAgents {
		spec := map[string]any{"nodeName": name}
		for k, v := range a.spec {
			spec[k] = v
		}
		p := podBody("kube-system", a.name+"-", "DaemonSet", a.name, a.sa, spec)
		pod := a.name + "-" + randName(g.r, 5)
		s := g.step(g.controllerID("daemon-set-controller"), "create", "pods", "kube-system", pod, "", 201)
		body(s, "RequestResponse", p, p)
		g.push(s)
	}
	g.play(e)
}

// nodeRemove: the autoscaler drains and deletes an idle node.
func (g *Generator) nodeRemove(e *event) {
	a := g.cast().autoscaler
	n := g.node()
	g.push(g.step(a, "patch", "nodes", "", n.name, "", 200))
	ns, d, i := g.pod()
	g.push(g.step(a, "create", "pods", ns.name, d.pods[i], "eviction", 201))
	g.push(g.step(a, "delete", "nodes", "", n.name, "", 200))
	g.push(g.step(g.controllerID("pod-garbage-collector"), "delete", "pods", ns.name, d.pods[i], "", 200))
	g.play(e)
}
