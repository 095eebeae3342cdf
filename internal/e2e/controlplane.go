// Package e2e runs a real Kubernetes control plane for tests: etcd and a
// kube-apiserver on loopback and random ports, with static bearer tokens,
// RBAC, service-account tokens and the audit webhook pointing at a handler
// the test sets. kubectl plays the clients.
//
// The binaries are not part of the repository: kube-apiserver is built by
// ../shared/scripts/build-kube-apiserver.sh OUT and named by
// VIGIL_E2E_KUBE_APISERVER; etcd is the etcd-server package's /usr/bin/etcd
// (or VIGIL_E2E_ETCD). Without them the tests skip, saying so.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
)

// Environment variables naming the binaries.
const (
	EnvAPIServer = "VIGIL_E2E_KUBE_APISERVER"
	EnvEtcd      = "VIGIL_E2E_ETCD"
)

// BuildHint says how to get the binaries, for skip messages.
const BuildHint = "build kube-apiserver with ../shared/scripts/build-kube-apiserver.sh OUT and set " +
	EnvAPIServer + "=OUT; install etcd with apt-get install -y etcd-server"

// AdminToken authenticates the admin user (group system:masters).
const AdminToken = "admin-token"

// Binaries returns the kube-apiserver and etcd binaries, or a reason to
// skip that names the build script.
func Binaries() (apiserver, etcd, skip string) {
	apiserver = os.Getenv(EnvAPIServer)
	if apiserver == "" {
		return "", "", EnvAPIServer + " is not set: " + BuildHint
	}
	if _, err := os.Stat(apiserver); err != nil {
		return "", "", fmt.Sprintf("%s=%s: %v: %s", EnvAPIServer, apiserver, err, BuildHint)
	}
	etcd = os.Getenv(EnvEtcd)
	if etcd == "" {
		etcd = "/usr/bin/etcd"
		if p, err := exec.LookPath("etcd"); err == nil {
			etcd = p
		}
	}
	if _, err := os.Stat(etcd); err != nil {
		return "", "", fmt.Sprintf("etcd %s: %v: %s", etcd, err, BuildHint)
	}
	return apiserver, etcd, ""
}

// User is a static bearer-token identity of the apiserver.
type User struct {
	Name   string
	Token  string
	Groups []string
}

// Options configure Start.
type Options struct {
	// Dir holds certificates, configs and logs (required; a test's
	// TempDir). etcd's data goes to /dev/shm when it exists.
	Dir string
	// AuditPolicy is the apiserver's audit policy (YAML); empty: no
	// auditing.
	AuditPolicy []byte
	// Users are added to the admin (AdminToken).
	Users []User
}

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	// URL is the apiserver's https://127.0.0.1:PORT.
	URL string
	// CAFile verifies the apiserver's certificate.
	CAFile string
	caPEM  []byte
	dir    string

	procs    []*process
	etcdDir  string
	auditSrv *http.Server
	audit    atomic.Pointer[http.Handler]
	stopOnce sync.Once
}

// Start runs etcd and the apiserver and waits until the apiserver is
// ready (RBAC bootstrapped). Stop ends both.
func Start(ctx context.Context, o Options) (_ *ControlPlane, err error) {
	apiserverBin, etcdBin, skip := Binaries()
	if skip != "" {
		return nil, errors.New(skip)
	}
	c := &ControlPlane{dir: o.Dir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	if c.etcdDir, err = os.MkdirTemp(shmOr(o.Dir), "etcd-"); err != nil {
		return nil, fmt.Errorf("etcd dir: %w", err)
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	etcd, err := startProcess(filepath.Join(o.Dir, "etcd.log"), etcdBin,
		"--name=e2e", "--data-dir="+c.etcdDir,
		"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=e2e="+peerURL, "--log-level=error", "--logger=zap")
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, etcd)

	files, err := c.writeFiles(o)
	if err != nil {
		return nil, err
	}
	args := []string{
		"--etcd-servers=" + clientURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", apiPort),
		"--tls-cert-file=" + files.cert, "--tls-private-key-file=" + files.key,
		"--token-auth-file=" + files.tokens, "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + files.saKey, "--service-account-signing-key-file=" + files.saKey,
		"--service-cluster-ip-range=10.96.0.0/24", "--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false", "--profiling=false", "--allow-privileged=true",
		// No controller-manager creates default service accounts.
		"--disable-admission-plugins=ServiceAccount",
		"--cert-dir=" + filepath.Join(o.Dir, "certs"),
	}
	if len(o.AuditPolicy) > 0 {
		if files.webhook, err = c.startAuditReceiver(); err != nil {
			return nil, err
		}
		args = append(args, "--audit-policy-file="+files.policy, "--audit-webhook-config-file="+files.webhook,
			"--audit-webhook-mode=batch", "--audit-webhook-batch-max-wait=200ms",
			"--audit-webhook-initial-backoff=100ms", "--audit-webhook-batch-throttle-enable=false")
	}
	api, err := startProcess(filepath.Join(o.Dir, "kube-apiserver.log"), apiserverBin, args...)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, api)
	c.URL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	if err := c.waitReady(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	return c, nil
}

// shmOr returns /dev/shm when it exists (etcd syncs every write; memory
// makes that cheap), else dir.
func shmOr(dir string) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return dir
}

// waitReady polls /readyz until it answers 200 or a process exits.
func (c *ControlPlane) waitReady(ctx context.Context, timeout time.Duration) error {
	cfg := c.RESTConfig(AdminToken)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		for _, p := range c.procs {
			if p.exited() {
				return fmt.Errorf("%s exited: %s", filepath.Base(p.cmd.Path), p.tail())
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+AdminToken)
		resp, err := hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("readyz %d: %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("kube-apiserver not ready after %s: %s\n%s", timeout, last, c.procs[len(c.procs)-1].tail())
}

// startAuditReceiver serves the audit webhook on loopback, handing each
// request to the handler SetAuditHandler set; it writes the apiserver's
// webhook kubeconfig.
func (c *ControlPlane) startAuditReceiver() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("audit receiver: %w", err)
	}
	c.auditSrv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := c.audit.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		// No vigil yet: the events of the apiserver's own start are dropped.
		_, _ = io.Copy(io.Discard, r.Body)
	})}
	go func() { _ = c.auditSrv.Serve(l) }()
	path := filepath.Join(c.dir, "audit-webhook.kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: vigil
  cluster: {server: "http://%s/audit"}
users:
- name: apiserver
  user: {}
contexts:
- name: vigil
  context: {cluster: vigil, user: apiserver}
current-context: vigil
`, l.Addr())
	return path, os.WriteFile(path, []byte(kc), 0o600)
}

// SetAuditHandler sends the apiserver's audit POSTs to h (nil: drop them).
func (c *ControlPlane) SetAuditHandler(h http.Handler) {
	if h == nil {
		c.audit.Store(nil)
		return
	}
	c.audit.Store(&h)
}

// Stop ends the apiserver, then etcd, and removes etcd's data.
func (c *ControlPlane) Stop() {
	c.stopOnce.Do(func() {
		if c.auditSrv != nil {
			_ = c.auditSrv.Close()
		}
		for i := len(c.procs) - 1; i >= 0; i-- {
			c.procs[i].stop()
		}
		if c.etcdDir != "" {
			_ = os.RemoveAll(c.etcdDir)
		}
	})
}

// RESTConfig is a client config authenticating with token.
func (c *ControlPlane) RESTConfig(token string) *rest.Config {
	return &rest.Config{Host: c.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM},
		QPS: 100, Burst: 200}
}

// Kubeconfig writes a kubeconfig for token and returns its path.
func (c *ControlPlane) Kubeconfig(name, token string) (string, error) {
	path := filepath.Join(c.dir, name+".kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: %q, certificate-authority: %q}
users:
- name: %s
  user: {token: %q}
contexts:
- name: %s
  context: {cluster: e2e, user: %s}
current-context: %s
`, c.URL, c.CAFile, name, token, name, name, name)
	return path, os.WriteFile(path, []byte(kc), 0o600)
}

// Kubectl runs kubectl with the kubeconfig; stdin may be nil. The error
// carries kubectl's output.
func Kubectl(ctx context.Context, kubeconfig string, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// ServiceAccountToken requests a token of the service account ns/name
// (TokenRequest, as the admin).
func (c *ControlPlane) ServiceAccountToken(ctx context.Context, ns, name string) (string, error) {
	core, err := corev1client.NewForConfig(c.RESTConfig(AdminToken))
	if err != nil {
		return "", err
	}
	exp := int64(3600)
	tr, err := core.ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token of %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, nil
}

// freePorts returns n free loopback ports.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
