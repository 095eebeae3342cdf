package auditgen

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
)

// identity is a client of the apiserver: who it is, where it connects from
// and which client it runs, serialized once.
type identity struct {
	username string
	// reason is the authorization.k8s.io/reason annotation of its allowed
	// requests.
	reason string
	// frag is `"user":{...},"sourceIPs":[...],"userAgent":"..."`.
	frag []byte
	// namespaces a person works in.
	namespaces []*namespace
}

type identityOpts struct {
	username, uid string
	groups        []string
	// extra is the user's extra map as a JSON object body, or "".
	extra      string
	ip, agent  string
	reason     string
	namespaces []*namespace
}

func newIdentity(o identityOpts) *identity {
	b := []byte(`"user":{`)
	if o.username != "" {
		b = append(b, `"username":`...)
		b = appendStr(b, o.username)
		if o.uid != "" {
			b = append(b, `,"uid":`...)
			b = appendStr(b, o.uid)
		}
		b = append(b, `,"groups":[`...)
		for i, gr := range o.groups {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendStr(b, gr)
		}
		b = append(b, ']')
		if o.extra != "" {
			b = append(b, `,"extra":{`...)
			b = append(b, o.extra...)
			b = append(b, '}')
		}
	}
	b = append(b, `},"sourceIPs":[`...)
	b = appendStr(b, o.ip)
	b = append(b, `],"userAgent":`...)
	b = appendStr(b, o.agent)
	return &identity{username: o.username, reason: o.reason, frag: b, namespaces: o.namespaces}
}

type namespace struct {
	name       string
	deploys    []*deployment
	secrets    []string
	configmaps []string
}

type deployment struct {
	name, hash, image, uid, digest string
	pods                           []string
	podUIDs                        []string
	generation                     int
}

type node struct {
	name, ip, uid string
	id            *identity
}

// cluster is the simulated cluster: its objects and its clients.
type cluster struct {
	nodes      []*node
	namespaces []*namespace // every namespace
	apps       []*namespace // application namespaces
	system     *namespace   // kube-system

	kcm, scheduler, apiserver, kubeProxy, coredns *identity
	controllers                                   []*identity
	prometheus, metricsServer, certManager        *identity
	ingress, argocd, deployer                     *identity
	people                                        []*identity
	admin                                         *identity
	anonymous, probe, badToken, scanner           *identity
	scripted                                      *identity
}

const (
	kubeVersion    = "v1.34.4"
	kubectlAgent   = "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0"
	nameAlphabet   = "bcdfghjklmnpqrstvwxz2456789"
	registry       = "registry.example.com"
	credIDPrefix   = `"authentication.kubernetes.io/credential-id":["X509SHA256=`
	saGroupsPrefix = "system:serviceaccounts:"
)

func randName(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = nameAlphabet[r.IntN(len(nameAlphabet))]
	}
	return string(b)
}

func randHex(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = hexDigits[r.IntN(16)]
	}
	return string(b)
}

func randUUID(r *rand.Rand) string {
	h := randHex(r, 32)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]
}

func componentAgent(component string) string {
	return component + "/" + kubeVersion + " (linux/amd64) kubernetes/$Format"
}

var appNames = []string{"web", "api", "worker", "frontend", "checkout", "cart", "auth", "redis",
	"postgres", "search-indexer", "notifier", "gateway", "billing", "scheduler-jobs", "media-resizer"}

func newCluster(r *rand.Rand, nodes int) *cluster {
	c := &cluster{}
	newNS := func(name string, apps int) *namespace {
		ns := &namespace{name: name, configmaps: []string{"kube-root-ca.crt"}}
		perm := r.Perm(len(appNames))
		for _, i := range perm[:apps] {
			d := &deployment{name: appNames[i], hash: randHex(r, 10), uid: randUUID(r), digest: randHex(r, 64),
				image: fmt.Sprintf("%s/%s/%s:1.%d.%d", registry, name, appNames[i], r.IntN(30), r.IntN(10)), generation: 1 + r.IntN(40)}
			for range 2 + r.IntN(4) {
				d.pods = append(d.pods, d.name+"-"+d.hash+"-"+randName(r, 5))
				d.podUIDs = append(d.podUIDs, randUUID(r))
			}
			ns.deploys = append(ns.deploys, d)
			ns.secrets = append(ns.secrets, d.name+"-credentials", d.name+"-tls", "sh.helm.release.v1."+d.name+".v"+fmt.Sprint(1+r.IntN(9)))
			ns.configmaps = append(ns.configmaps, d.name+"-config")
		}
		ns.secrets = append(ns.secrets, "regcred")
		c.namespaces = append(c.namespaces, ns)
		return ns
	}
	c.system = newNS("kube-system", 0)
	c.system.secrets = append(c.system.secrets, "bootstrap-token-"+randName(r, 6), "cloud-provider-creds", "etcd-client-cert")
	c.system.deploys = []*deployment{{name: "coredns", hash: randHex(r, 10), image: registry + "/coredns/coredns:v1.11.3", uid: randUUID(r), digest: randHex(r, 64), generation: 3}}
	for range 2 {
		c.system.deploys[0].pods = append(c.system.deploys[0].pods, "coredns-"+c.system.deploys[0].hash+"-"+randName(r, 5))
		c.system.deploys[0].podUIDs = append(c.system.deploys[0].podUIDs, randUUID(r))
	}
	for _, n := range []string{"default", "kube-public", "kube-node-lease", "monitoring", "cert-manager", "ingress-nginx", "argocd"} {
		newNS(n, 0)
	}
	for _, n := range []string{"team-a", "team-b", "team-c", "team-d", "payments", "search", "prod", "staging", "ci"} {
		c.apps = append(c.apps, newNS(n, 3+r.IntN(4)))
	}

	masterIP := "10.0.0.10"
	for i := range nodes {
		ip := fmt.Sprintf("10.0.%d.%d", 1+i/200, 10+i%200)
		n := &node{name: "ip-" + strings.ReplaceAll(ip, ".", "-") + ".ec2.internal", ip: ip, uid: randUUID(r)}
		n.id = newIdentity(identityOpts{username: "system:node:" + n.name, groups: []string{"system:nodes", "system:authenticated"},
			extra: credIDPrefix + randHex(r, 64) + `"]`, ip: ip, agent: componentAgent("kubelet")})
		c.nodes = append(c.nodes, n)
	}
	cp := func(user, component string, groups []string) *identity {
		return newIdentity(identityOpts{username: user, groups: groups, ip: masterIP, agent: componentAgent(component),
			reason: fmt.Sprintf("RBAC: allowed by ClusterRoleBinding %q of ClusterRole %q to User %q", user, user, user)})
	}
	c.kcm = cp("system:kube-controller-manager", "kube-controller-manager", []string{"system:authenticated"})
	c.scheduler = cp("system:kube-scheduler", "kube-scheduler", []string{"system:authenticated"})
	c.apiserver = newIdentity(identityOpts{username: "system:apiserver", uid: randUUID(r),
		groups: []string{"system:authenticated", "system:masters"}, ip: "::1", agent: componentAgent("kube-apiserver")})
	sa := func(ns, name, agent, ip, pod, role string) *identity {
		user := "system:serviceaccount:" + ns + ":" + name
		extra := `"authentication.kubernetes.io/credential-id":["JTI=` + randUUID(r) + `"]`
		if pod != "" {
			n := c.nodes[r.IntN(len(c.nodes))]
			extra += `,"authentication.kubernetes.io/node-name":["` + n.name + `"],"authentication.kubernetes.io/node-uid":["` + n.uid +
				`"],"authentication.kubernetes.io/pod-name":["` + pod + `"],"authentication.kubernetes.io/pod-uid":["` + randUUID(r) + `"]`
			ip = n.ip
		}
		return newIdentity(identityOpts{username: user, uid: randUUID(r),
			groups: []string{"system:serviceaccounts", saGroupsPrefix + ns, "system:authenticated"}, extra: extra, ip: ip, agent: agent,
			reason: fmt.Sprintf("RBAC: allowed by ClusterRoleBinding %q of ClusterRole %q to ServiceAccount %q", role, role, name+"/"+ns)})
	}
	for _, ctl := range []string{"replicaset-controller", "deployment-controller", "endpointslice-controller",
		"endpoint-controller", "node-controller", "generic-garbage-collector", "resourcequota-controller",
		"namespace-controller", "job-controller", "horizontal-pod-autoscaler", "daemon-set-controller", "statefulset-controller"} {
		c.controllers = append(c.controllers, sa("kube-system", ctl,
			componentAgent("kube-controller-manager")+"/system:serviceaccount:kube-system:"+ctl, masterIP, "", "system:controller:"+ctl))
	}
	c.kubeProxy = sa("kube-system", "kube-proxy", componentAgent("kube-proxy"), "", "kube-proxy-"+randName(r, 5), "kube-proxy")
	c.coredns = sa("kube-system", "coredns", "coredns/v1.11.3 (linux/amd64) kubernetes/$Format", "", c.system.deploys[0].pods[0], "coredns")
	c.prometheus = sa("monitoring", "prometheus-k8s", "Prometheus/2.53.1", "", "prometheus-k8s-0", "prometheus-k8s")
	c.metricsServer = sa("kube-system", "metrics-server", "metrics-server/v0.7.2 (linux/amd64) kubernetes/$Format", "", "metrics-server-"+randHex(r, 10)+"-"+randName(r, 5), "metrics-server")
	c.certManager = sa("cert-manager", "cert-manager", "cert-manager-controller/v1.15.1 (linux/amd64) cert-manager/"+randHex(r, 40), "", "cert-manager-"+randHex(r, 10)+"-"+randName(r, 5), "cert-manager")
	c.ingress = sa("ingress-nginx", "ingress-nginx", "nginx-ingress-controller/v1.11.2 (linux/amd64) ingress-nginx/"+randHex(r, 9), "", "ingress-nginx-controller-"+randHex(r, 10)+"-"+randName(r, 5), "ingress-nginx")
	c.argocd = sa("argocd", "argocd-application-controller", "argocd-application-controller/v2.11.7+e4a0246 (linux/amd64) argocd/"+randHex(r, 7), "", "argocd-application-controller-0", "argocd-application-controller")
	c.deployer = sa("ci", "deployer", kubectlAgent, "", "runner-"+randName(r, 8)+"-project-42-concurrent-0", "deployer")

	people := []struct {
		name   string
		groups []string
		ns     []int
	}{
		{"alice", []string{"developers", "system:authenticated"}, []int{0, 1}},
		{"bob", []string{"developers", "system:authenticated"}, []int{1, 2}},
		{"carol", []string{"developers", "system:authenticated"}, []int{2, 3, 4}},
		{"dave", []string{"developers", "system:authenticated"}, []int{4, 5}},
		{"oidc:jane.doe@example.com", []string{"oidc:sre", "system:authenticated"}, []int{6, 7, 5, 4}},
		{"oidc:raj.patel@example.com", []string{"oidc:sre", "system:authenticated"}, []int{6, 7, 8}},
	}
	for i, p := range people {
		var nss []*namespace
		for _, j := range p.ns {
			nss = append(nss, c.apps[j%len(c.apps)])
		}
		extra := credIDPrefix + randHex(r, 64) + `"]`
		if strings.HasPrefix(p.name, "oidc:") {
			extra = `"authentication.kubernetes.io/credential-id":["JTI=` + randUUID(r) + `"]`
		}
		c.people = append(c.people, newIdentity(identityOpts{username: p.name, groups: p.groups, extra: extra,
			ip: fmt.Sprintf("192.168.%d.%d", 10+i, 20+r.IntN(200)), agent: kubectlAgent, namespaces: nss,
			reason: fmt.Sprintf("RBAC: allowed by RoleBinding %q of ClusterRole %q to User %q", p.name+"-edit/"+nss[0].name, "edit", p.name)}))
	}
	c.admin = newIdentity(identityOpts{username: "kubernetes-admin", groups: []string{"system:masters", "system:authenticated"},
		extra: credIDPrefix + randHex(r, 64) + `"]`, ip: "192.168.1.5", agent: kubectlAgent, namespaces: c.apps})
	c.anonymous = newIdentity(identityOpts{username: "system:anonymous", groups: []string{"system:unauthenticated"},
		ip: "10.0.0.2", agent: "ELB-HealthChecker/2.0",
		reason: `RBAC: allowed by ClusterRoleBinding "system:public-info-viewer" of ClusterRole "system:public-info-viewer" to Group "system:unauthenticated"`})
	c.probe = newIdentity(identityOpts{username: "system:anonymous", groups: []string{"system:unauthenticated"},
		ip: masterIP, agent: "kube-probe/1.34",
		reason: `RBAC: allowed by ClusterRoleBinding "system:public-info-viewer" of ClusterRole "system:public-info-viewer" to Group "system:unauthenticated"`})
	c.badToken = newIdentity(identityOpts{ip: "203.0.113.77", agent: "python-requests/2.31.0"})
	c.scanner = newIdentity(identityOpts{username: "system:anonymous", groups: []string{"system:unauthenticated"},
		ip: "198.51.100.23", agent: "Go-http-client/1.1"})
	c.scripted = sa("ci", "backup", "python-requests/2.31.0", "", "backup-"+randName(r, 5)+"-"+randName(r, 5), "backup")
	return c
}

// execCommands are the query strings of exec requests, most of them
// harmless, a few reading credentials or copying files out.
var execCommands = func() []string {
	cmds := [][]string{
		{"id"}, {"env"}, {"ls", "-la", "/app"}, {"sh", "-c", "ps aux"}, {"/bin/sh"}, {"bash"},
		{"redis-cli", "info"}, {"psql", "-c", "select 1"}, {"cat", "/etc/resolv.conf"}, {"date"},
		{"curl", "-s", "localhost:8080/healthz"}, {"nslookup", "kubernetes.default"},
		{"cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"},
		{"tar", "cf", "-", "/app/data"},
	}
	out := make([]string, len(cmds))
	for i, c := range cmds {
		var sb strings.Builder
		for j, a := range c {
			if j > 0 {
				sb.WriteByte('&')
			}
			sb.WriteString("command=")
			sb.WriteString(url.QueryEscape(a))
		}
		out[i] = sb.String()
	}
	return out
}()
