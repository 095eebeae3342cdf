package detect

import "testing"

// TestUserAgentFamily reads user agents as clusters send them: those of
// testdata/real-apiserver (a kube-apiserver v1.34 with kubectl, curl and a
// python script), and those the clients' own sources and documentation
// set (client-go's default NAME/VERSION (OS/ARCH) kubernetes/COMMIT, the
// Terraform providers' HashiCorp/1.0 Terraform/VERSION, the Python
// client's OpenAPI-Generator/VERSION/python, Helm's Helm/VERSION).
func TestUserAgentFamily(t *testing.T) {
	cases := []struct{ ua, want string }{
		// testdata/real-apiserver
		{"kube-apiserver/v1.34.4 (linux/amd64) kubernetes/$Format", "kube-apiserver"},
		{"kube-controller-manager/v1.34.4 (linux/amd64) kubernetes/$Format/shared-informers", "kube-controller-manager"},
		{"kube-controller-manager/v1.34.4 (linux/amd64) kubernetes/$Format/leader-election", "kube-controller-manager"},
		{"kube-controller-manager/v1.34.4 (linux/amd64) kubernetes/$Format/system:serviceaccount:kube-system:resourcequota-controller", "kube-controller-manager"},
		{"kubectl.1.33/v1.33.1 (linux/amd64) kubernetes/8adc0f0", "kubectl"},
		{"kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0", "kubectl"},
		{"kubelet/v1.34.4 (linux/amd64) kubernetes/$Format", "kubelet"},
		{"kubectl-dispatcher/v1.0 (linux/amd64)", "kubectl-dispatcher"},
		{"curl/7.88.1", "curl"},
		{"python-requests/2.31.0", "python-requests"},
		// Other kubectl builds and versions are the same client.
		{"kubectl/v1.32.1 (linux/amd64) kubernetes/abc1234", "kubectl"},
		{"kubectl/v1.33.0 (darwin/arm64) kubernetes/60a317e", "kubectl"},
		{"kubectl.exe/v1.32.1 (windows/amd64) kubernetes/8adc0f0", "kubectl"},
		{"kubectl-1.29.2/v1.29.2 (linux/amd64) kubernetes/4b8e819", "kubectl"},
		// client-go programs by binary.
		{"kube-scheduler/v1.34.4 (linux/amd64) kubernetes/$Format/leader-election", "kube-scheduler"},
		{"kube-proxy/v1.34.4 (linux/amd64) kubernetes/$Format", "kube-proxy"},
		{"kubeadm/v1.34.4 (linux/amd64) kubernetes/$Format", "kubeadm"},
		{"cluster-autoscaler/v1.31.0 (linux/amd64) kubernetes/$Format", "cluster-autoscaler"},
		{"main/v0.0.0 (linux/arm64) kubernetes/$Format", "main"},
		{"kubernetes-ingress-controller/v2.12.0-189-g5a4d76638", "kubernetes-ingress-controller"},
		{"argocd-application-controller/v2.11.7+e4a0246 (linux/amd64) argocd/e4a0246", "argocd-application-controller"},
		{"k9s/v0.0.0 (darwin/arm64) kubernetes/$Format", "k9s"},
		{"Talos/v1.14.0-alpha.2-8-gba926c6ce-dirty", "talos"},
		// Tools with their own product token.
		{"Helm/3.15.2", "helm"},
		{"HashiCorp/1.0 Terraform/1.5.7", "terraform"},
		{"Terraform/1.6.0 (+https://www.terraform.io) terraform-provider-kubernetes/2.23.0", "terraform"},
		{"OpenAPI-Generator/29.0.0/python", "openapi-generator/python"},
		{"Go-http-client/1.1", "go-http-client"},
		{"Go-http-client/2.0", "go-http-client"},
		{"Prometheus/2.53.1", "prometheus"},
		{"kube-probe/1.34", "kube-probe"},
		{"ELB-HealthChecker/2.0", "elb-healthchecker"},
		{"aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux", "aws-sdk-go-v2"},
		// Browsers are one family.
		{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "browser"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:127.0) Gecko/20100101 Firefox/127.0", "browser"},
		// Nothing, or no version.
		{"", NoUserAgent},
		{"  ", NoUserAgent},
		{"vector", "vector"},
		{"k3s", "k3s"},
	}
	for _, c := range cases {
		if got := UserAgentFamily(c.ua); got != c.want {
			t.Errorf("UserAgentFamily(%q) = %q, want %q", c.ua, got, c.want)
		}
	}
}

func TestIPNetwork(t *testing.T) {
	cases := []struct{ ip, want string }{
		{"203.0.113.77", "203.0.113.0/24"},
		{"::ffff:198.51.100.7", "198.51.100.0/24"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"not-an-address", "not-an-address"},
	}
	for _, c := range cases {
		if got := IPNetwork(c.ip); got != c.want {
			t.Errorf("IPNetwork(%q) = %q, want %q", c.ip, got, c.want)
		}
	}
}
