// Package tlsutil creates the certificates a quick start needs: a private
// CA, a serving certificate for the webhook and a client certificate for
// the apiserver, and the webhook kubeconfig that hands the latter to
// kube-apiserver (--audit-webhook-config-file).
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names inside the certificate directory.
const (
	CAFile         = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
	ClientCertFile = "client.crt"
	ClientKeyFile  = "client.key"
	// ClientName is the common name of the generated client certificate.
	ClientName = "kube-apiserver-audit-webhook"
)

// Bundle is a certificate directory.
type Bundle struct {
	Dir string
}

// Path returns the path of one of the bundle's files.
func (b Bundle) Path(name string) string { return filepath.Join(b.Dir, name) }

// Ensure creates in dir whatever is missing of a CA, a serving certificate
// for hosts (names or IP addresses) and a client certificate, and reports
// whether it created anything. Existing files are kept; a serving
// certificate that lacks one of hosts is issued again from the same CA.
func Ensure(dir string, hosts []string, now time.Time) (Bundle, bool, error) {
	b := Bundle{Dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return b, false, fmt.Errorf("create certificate directory: %w", err)
	}
	created := false
	ca, caKey, err := loadPair(b.Path(CAFile), b.Path(CAKeyFile))
	if errors.Is(err, os.ErrNotExist) {
		ca, caKey, err = issue(nil, nil, &x509.Certificate{
			Subject:               pkix.Name{CommonName: "vigil audit webhook CA"},
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.AddDate(10, 0, 0),
		}, b.Path(CAFile), b.Path(CAKeyFile))
		created = true
	}
	if err != nil {
		return b, false, fmt.Errorf("certificate authority: %w", err)
	}
	srv, _, err := loadPair(b.Path(ServerCertFile), b.Path(ServerKeyFile))
	if errors.Is(err, os.ErrNotExist) || (err == nil && !covers(srv, hosts)) {
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: "vigil"},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			NotBefore:   now.Add(-time.Hour),
			NotAfter:    now.AddDate(2, 0, 0),
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != "" {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		_, _, err = issue(ca, caKey, tmpl, b.Path(ServerCertFile), b.Path(ServerKeyFile))
		created = true
	}
	if err != nil {
		return b, false, fmt.Errorf("serving certificate: %w", err)
	}
	_, _, err = loadPair(b.Path(ClientCertFile), b.Path(ClientKeyFile))
	if errors.Is(err, os.ErrNotExist) {
		_, _, err = issue(ca, caKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: ClientName},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			NotBefore:   now.Add(-time.Hour),
			NotAfter:    now.AddDate(2, 0, 0),
		}, b.Path(ClientCertFile), b.Path(ClientKeyFile))
		created = true
	}
	if err != nil {
		return b, false, fmt.Errorf("client certificate: %w", err)
	}
	return b, created, nil
}

// covers reports whether the certificate names every host.
func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
				return false
			}
		} else if h != "" && !slices.Contains(c.DNSNames, h) {
			return false
		}
	}
	return true
}

func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		if _, serr := os.Stat(certPath); errors.Is(serr, os.ErrNotExist) {
			return nil, nil, serr
		}
		return nil, nil, fmt.Errorf("load %s: %w", certPath, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("load %s: key is not ECDSA", keyPath)
	}
	return pair.Leaf, key, nil
}

// issue creates a key and a certificate signed by parent (self-signed when
// parent is nil) and writes both.
func issue(parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate, certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("generate serial: %w", err)
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, nil, fmt.Errorf("write key: %w", err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, fmt.Errorf("write certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

// ServerConfig returns a TLS 1.2+ configuration serving certFile/keyFile;
// with clientCAFile it asks for client certificates and verifies those
// given against it (whether one is required is the webhook's decision, as
// a bearer token may stand in).
func ServerConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load serving certificate: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if clientCAFile != "" {
		pool, err := loadPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// ClientConfig returns a TLS configuration trusting caFile and presenting
// certFile/keyFile (when not empty).
func ClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// WriteKubeconfig writes the kubeconfig kube-apiserver reads with
// --audit-webhook-config-file: the webhook URL, the CA that signed the
// serving certificate and the client certificate to present.
func WriteKubeconfig(path, serverURL string, b Bundle) error {
	read := func(name string) (string, error) {
		data, err := os.ReadFile(b.Path(name))
		if err != nil {
			return "", fmt.Errorf("read %s: %w", name, err)
		}
		return base64.StdEncoding.EncodeToString(data), nil
	}
	var vals [3]string
	for i, name := range []string{CAFile, ClientCertFile, ClientKeyFile} {
		v, err := read(name)
		if err != nil {
			return fmt.Errorf("write webhook kubeconfig: %w", err)
		}
		vals[i] = v
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `# kube-apiserver --audit-webhook-config-file for vigil.
# Written by vigil serve; the client key inside is a credential.
apiVersion: v1
kind: Config
clusters:
- name: vigil
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: kube-apiserver
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: vigil
  context:
    cluster: vigil
    user: kube-apiserver
current-context: vigil
`, serverURL, vals[0], vals[1], vals[2])
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		return fmt.Errorf("write webhook kubeconfig: %w", err)
	}
	return nil
}
