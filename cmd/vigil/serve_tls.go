package main

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-k8s/vigil/ingest/tlsutil"
	"github.com/vigil-k8s/vigil/ingest/webhook"
)

// webhookTLS is the webhook's TLS configuration and the CA that verifies
// client certificates ("" when none).
type webhookTLS struct {
	cfg      *tls.Config
	clientCA string
}

// setupTLS loads the configured certificate or creates the quick-start
// set, and writes the webhook kubeconfig for the generated one.
func (a *app) setupTLS(f serveFlags, sc ServeConfig) (*webhookTLS, error) {
	if sc.TLSCert != "" {
		cfg, err := tlsutil.ServerConfig(sc.TLSCert, sc.TLSKey, sc.ClientCA)
		if err != nil {
			return nil, usageError{err}
		}
		return &webhookTLS{cfg: cfg, clientCA: sc.ClientCA}, nil
	}
	serverURL, hosts, err := advertise(f.advertiseURL, f.listen)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(f.dataDir, "tls")
	b, created, err := tlsutil.Ensure(dir, hosts, time.Now())
	if err != nil {
		return nil, fmt.Errorf("create certificates: %w", err)
	}
	clientCA := cmp.Or(sc.ClientCA, b.Path(tlsutil.CAFile))
	cfg, err := tlsutil.ServerConfig(b.Path(tlsutil.ServerCertFile), b.Path(tlsutil.ServerKeyFile), clientCA)
	if err != nil {
		return nil, err
	}
	kc := filepath.Join(f.dataDir, "webhook-kubeconfig.yaml")
	if err := tlsutil.WriteKubeconfig(kc, serverURL, b); err != nil {
		return nil, err
	}
	if created {
		fmt.Fprintf(a.stderr, "vigil: created certificates in %s\n", dir)
	}
	fmt.Fprintf(a.stderr, "vigil: kube-apiserver --audit-webhook-config-file=%s (webhook %s)\n", kc, serverURL)
	return &webhookTLS{cfg: cfg, clientCA: clientCA}, nil
}

// advertise returns the webhook URL for the kubeconfig and the host names
// the serving certificate must carry.
func advertise(advertiseURL, listen string) (string, []string, error) {
	hostname, _ := os.Hostname()
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if hostname != "" {
		hosts = append(hosts, hostname)
	}
	if advertiseURL == "" {
		_, port, err := net.SplitHostPort(listen)
		if err != nil {
			return "", nil, usagef("--listen %q: %w", listen, err)
		}
		return "https://" + net.JoinHostPort(cmp.Or(hostname, "localhost"), port) + webhook.DefaultPath, hosts, nil
	}
	u, err := url.Parse(advertiseURL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return "", nil, usagef("--advertise-url %q: want https://HOST[:PORT][/audit[/CLUSTER]]", advertiseURL)
	}
	if u.Path == "" {
		u.Path = webhook.DefaultPath
	}
	return u.String(), append(hosts, u.Hostname()), nil
}
