package tlsutil

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestEnsure_ServesMutualTLS(t *testing.T) {
	dir := t.TempDir()
	b, created, err := Ensure(dir, []string{"127.0.0.1", "localhost"}, time.Now())
	if err != nil || !created {
		t.Fatalf("Ensure = %v, %v", created, err)
	}
	srvCfg, err := ServerConfig(b.Path(ServerCertFile), b.Path(ServerKeyFile), b.Path(CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if srvCfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x", srvCfg.MinVersion)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "no client cert", 401)
			return
		}
		w.Write([]byte(r.TLS.VerifiedChains[0][0].Subject.CommonName))
	}))
	srv.TLS = srvCfg
	srv.StartTLS()
	defer srv.Close()
	cliCfg, err := ClientConfig(b.Path(CAFile), b.Path(ClientCertFile), b.Path(ClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cliCfg}}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 100)
	n, _ := resp.Body.Read(buf)
	if resp.StatusCode != 200 || string(buf[:n]) != ClientName {
		t.Fatalf("status %d body %q", resp.StatusCode, buf[:n])
	}
}

func TestEnsure_KeepsAndReissues(t *testing.T) {
	dir := t.TempDir()
	b, _, err := Ensure(dir, []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca1, _ := os.ReadFile(b.Path(CAFile))
	srv1, _ := os.ReadFile(b.Path(ServerCertFile))
	if _, created, err := Ensure(dir, []string{"localhost"}, time.Now()); err != nil || created {
		t.Fatalf("second Ensure created = %v, err %v; want nothing new", created, err)
	}
	// A new advertised host: the serving certificate is issued again by
	// the same CA.
	if _, created, err := Ensure(dir, []string{"localhost", "vigil.example.com"}, time.Now()); err != nil || !created {
		t.Fatalf("Ensure with a new host created = %v, err %v", created, err)
	}
	ca2, _ := os.ReadFile(b.Path(CAFile))
	srv2, _ := os.ReadFile(b.Path(ServerCertFile))
	if string(ca1) != string(ca2) || string(srv1) == string(srv2) {
		t.Error("want the same CA and a new serving certificate")
	}
	kc := dir + "/webhook-kubeconfig.yaml"
	if err := WriteKubeconfig(kc, "https://vigil.example.com:8443/audit", b); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(kc)
	for _, want := range []string{"server: https://vigil.example.com:8443/audit", "certificate-authority-data: ", "client-certificate-data: ", "client-key-data: "} {
		if !strings.Contains(string(data), want) {
			t.Errorf("kubeconfig lacks %q", want)
		}
	}
	if st, _ := os.Stat(kc); st.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v, want 0600 (it holds a key)", st.Mode().Perm())
	}
}
