// Command vigil-loadgen posts audit EventLists to a vigil webhook (or any
// audit webhook) at a chosen rate, the way kube-apiserver's webhook backend
// does, and reports accepted events per second and the acknowledgement
// latency of each POST (p50, p99, max).
//
//	vigil-loadgen -url http://127.0.0.1:8080/audit -rate 50000 -batch 400 -duration 30s
//	vigil-loadgen -url https://vigil:8443/audit -kubeconfig vigil-data/webhook-kubeconfig.yaml ...
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sigs.k8s.io/yaml"
)

type options struct {
	url, events, kubeconfig, cacert, cert, key, token string
	metrics                                           string
	rate, batch, conns                                int
	duration, warmup                                  time.Duration
	insecure                                          bool
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:8080/audit", "webhook URL")
	flag.IntVar(&o.rate, "rate", 10000, "events per second to offer (0: as fast as acknowledged)")
	flag.IntVar(&o.batch, "batch", 400, "events per POST (the apiserver sends up to 400)")
	flag.IntVar(&o.conns, "conns", 8, "POSTs in flight at most")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send and measure")
	flag.DurationVar(&o.warmup, "warmup", 0, "send at the same rate for this long first, without measuring (a fresh server grows its heap and caches then)")
	flag.StringVar(&o.events, "events", "", "audit log (JSON lines) whose events are sent with fresh auditIDs and times (default: built-in samples)")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "webhook kubeconfig to take the URL, CA and client certificate from")
	flag.StringVar(&o.cacert, "cacert", "", "CA file that signed the server certificate")
	flag.StringVar(&o.cert, "cert", "", "client certificate file")
	flag.StringVar(&o.key, "key", "", "client key file")
	flag.StringVar(&o.token, "token", "", "bearer token")
	flag.BoolVar(&o.insecure, "insecure-skip-verify", false, "do not verify the server certificate")
	flag.StringVar(&o.metrics, "metrics", "", "vigil's /metrics URL: also report the events detection processed per second")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "vigil-loadgen:", err)
		os.Exit(1)
	}
}

// samples are typical audit events; the generator varies user, namespace
// and verb and fills in auditID and timestamps.
var samples = []string{
	`{"level":"Metadata","auditID":"@ID@","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns-@N@/configmaps?limit=500","verb":"list","user":{"username":"system:serviceaccount:ci:deployer","uid":"0b6a1c1e-7a43-4b43-9d56-2ac0c1e1f1a1","groups":["system:serviceaccounts","system:serviceaccounts:ci","system:authenticated"]},"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0","objectRef":{"resource":"configmaps","namespace":"ns-@N@","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"@TS@","stageTimestamp":"@TS@","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"deployer-edit/ci\" of ClusterRole \"edit\" to ServiceAccount \"deployer/ci\""}}`,
	`{"level":"Metadata","auditID":"@ID@","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/pods/kube-proxy-@N@","verb":"get","user":{"username":"system:node:node-@N@","groups":["system:nodes","system:authenticated"]},"sourceIPs":["10.0.1.@N@"],"userAgent":"kubelet/v1.34.4 (linux/amd64) kubernetes/4b1d0a4","objectRef":{"resource":"pods","namespace":"kube-system","name":"kube-proxy-@N@","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"@TS@","stageTimestamp":"@TS@","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`,
	`{"level":"Metadata","auditID":"@ID@","stage":"ResponseComplete","requestURI":"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager","verb":"update","user":{"username":"system:kube-controller-manager","groups":["system:authenticated"]},"sourceIPs":["127.0.0.1"],"userAgent":"kube-controller-manager/v1.34.4 (linux/amd64) kubernetes/4b1d0a4/leader-election","objectRef":{"resource":"leases","namespace":"kube-system","name":"kube-controller-manager","apiGroup":"coordination.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"@TS@","stageTimestamp":"@TS@","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"system:kube-controller-manager\""}}`,
	`{"level":"Metadata","auditID":"@ID@","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/team-@N@/deployments/web","verb":"get","user":{"username":"alice","groups":["developers","system:authenticated"]},"sourceIPs":["192.168.3.@N@"],"userAgent":"kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0","objectRef":{"resource":"deployments","namespace":"team-@N@","name":"web","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"@TS@","stageTimestamp":"@TS@","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"alice-view/team-@N@\" of ClusterRole \"view\" to User \"alice\""}}`,
}

// template is an event split around its placeholders.
type template struct{ parts [][]byte }

func parseTemplate(s string) template {
	var t template
	for s != "" {
		i := strings.Index(s, "@")
		if i < 0 {
			t.parts = append(t.parts, []byte(s))
			break
		}
		j := strings.Index(s[i+1:], "@")
		if j < 0 {
			t.parts = append(t.parts, []byte(s))
			break
		}
		t.parts = append(t.parts, []byte(s[:i]), []byte(s[i:i+j+2]))
		s = s[i+j+2:]
	}
	return t
}

// fromLog turns logged events into templates: auditID and the timestamps
// become placeholders.
func fromLog(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open events: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() && len(out) < 10000 {
		l := sc.Text()
		for _, k := range []string{"auditID", "requestReceivedTimestamp", "stageTimestamp"} {
			i := strings.Index(l, `"`+k+`":"`)
			if i < 0 {
				continue
			}
			start := i + len(k) + 4
			end := strings.IndexByte(l[start:], '"')
			ph := "@TS@"
			if k == "auditID" {
				ph = "@ID@"
			}
			l = l[:start] + ph + l[start+end:]
		}
		l = strings.Replace(l, `"kind":"Event","apiVersion":"audit.k8s.io/v1",`, "", 1)
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New("no events in " + path)
	}
	return out, nil
}

type gen struct {
	tmpls []template
	seq   atomic.Uint64
	run   string
}

// body builds one EventList of n events with fresh ids and the time now.
func (g *gen) body(buf []byte, n int) []byte {
	ts := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
	buf = append(buf[:0], `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`...)
	for i := range n {
		s := g.seq.Add(1)
		if i > 0 {
			buf = append(buf, ',')
		}
		for _, p := range g.tmpls[s%uint64(len(g.tmpls))].parts {
			switch string(p) {
			case "@ID@":
				buf = append(buf, g.run...)
				buf = strconv.AppendUint(buf, s, 10)
			case "@TS@":
				buf = append(buf, ts...)
			case "@N@":
				buf = strconv.AppendUint(buf, s%50, 10)
			default:
				buf = append(buf, p...)
			}
		}
	}
	return append(buf, "]}"...)
}

func client(o *options) (*http.Client, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.insecure}
	if o.kubeconfig != "" {
		if err := fromKubeconfig(o, cfg); err != nil {
			return nil, err
		}
	}
	if o.cacert != "" {
		pem, err := os.ReadFile(o.cacert)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AppendCertsFromPEM(pem)
	}
	if o.cert != "" {
		pair, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: cfg, MaxIdleConnsPerHost: o.conns, MaxConnsPerHost: o.conns, DisableCompression: true}}, nil
}

// fromKubeconfig reads the server URL, CA and client certificate of a
// webhook kubeconfig (the first cluster and user).
func fromKubeconfig(o *options, cfg *tls.Config) error {
	data, err := os.ReadFile(o.kubeconfig)
	if err != nil {
		return fmt.Errorf("read kubeconfig: %w", err)
	}
	var kc struct {
		Clusters []struct {
			Cluster struct {
				Server string `json:"server"`
				CA     string `json:"certificate-authority-data"`
			} `json:"cluster"`
		} `json:"clusters"`
		Users []struct {
			User struct {
				Cert  string `json:"client-certificate-data"`
				Key   string `json:"client-key-data"`
				Token string `json:"token"`
			} `json:"user"`
		} `json:"users"`
	}
	if err := yaml.Unmarshal(data, &kc); err != nil || len(kc.Clusters) == 0 {
		return fmt.Errorf("kubeconfig %s: not a webhook kubeconfig (%v)", o.kubeconfig, err)
	}
	dec := func(s string) []byte { b, _ := base64.StdEncoding.DecodeString(s); return b }
	c := kc.Clusters[0].Cluster
	o.url = c.Server
	if c.CA != "" {
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AppendCertsFromPEM(dec(c.CA))
	}
	if len(kc.Users) > 0 {
		u := kc.Users[0].User
		if u.Cert != "" {
			pair, err := tls.X509KeyPair(dec(u.Cert), dec(u.Key))
			if err != nil {
				return fmt.Errorf("kubeconfig client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		if u.Token != "" && o.token == "" {
			o.token = u.Token
		}
	}
	return nil
}

func run(ctx context.Context, o options, out io.Writer) error {
	if o.batch <= 0 || o.conns <= 0 || o.rate < 0 {
		return errors.New("-batch and -conns must be positive, -rate not negative")
	}
	srcs := samples
	if o.events != "" {
		var err error
		if srcs, err = fromLog(o.events); err != nil {
			return err
		}
	}
	g := &gen{run: fmt.Sprintf("lg-%x-", time.Now().UnixNano())}
	for _, s := range srcs {
		g.tmpls = append(g.tmpls, parseTemplate(s))
	}
	c, err := client(&o)
	if err != nil {
		return err
	}
	if _, err := processed(o.metrics); err != nil {
		return err
	}
	// The run's end stops new POSTs; those in flight finish (only an
	// interrupt cancels them), so none is cut off after the server took it.
	reqCtx := ctx
	ctx, cancel := context.WithTimeout(ctx, o.warmup+o.duration)
	defer cancel()
	// POSTs sent before measuring starts (the warm-up) are not counted.
	measureFrom := time.Now().Add(o.warmup)

	var (
		mu        sync.Mutex
		latencies []time.Duration
		codes     = map[int]int{}
		accepted  atomic.Int64
		errs      atomic.Int64
	)
	tokens := make(chan struct{}, o.conns)
	var wg sync.WaitGroup
	for range o.conns {
		wg.Go(func() {
			var buf []byte
			for {
				select {
				case <-ctx.Done():
					return
				case _, ok := <-tokens:
					if !ok {
						return
					}
				}
				buf = g.body(buf, o.batch)
				req, _ := http.NewRequestWithContext(reqCtx, "POST", o.url+"?timeout=30s", bytes.NewReader(buf))
				req.Header.Set("Content-Type", "application/json")
				if o.token != "" {
					req.Header.Set("Authorization", "Bearer "+o.token)
				}
				t0 := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					if reqCtx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if t0.Before(measureFrom) {
					continue
				}
				mu.Lock()
				codes[resp.StatusCode]++
				if resp.StatusCode == 200 {
					latencies = append(latencies, d)
				}
				mu.Unlock()
				if resp.StatusCode == 200 {
					accepted.Add(int64(o.batch))
				}
			}
		})
	}
	var processed0 float64
	measured := make(chan error, 1)
	go func() {
		select {
		case <-time.After(time.Until(measureFrom)):
		case <-ctx.Done():
		}
		var err error
		processed0, err = processed(o.metrics)
		measured <- err
	}()
	// Pace POSTs evenly (rate 0: no pacing); a POST that finds every
	// connection busy waits, which shows as a lower achieved rate.
	var interval time.Duration
	if o.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(o.batch) / float64(o.rate))
	}
	next := time.Now()
paced:
	for {
		select {
		case tokens <- struct{}{}:
		case <-ctx.Done():
			break paced
		}
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				break paced
			}
		}
	}
	close(tokens)
	wg.Wait()
	if err := <-measured; err != nil {
		return err
	}
	el := time.Since(measureFrom)
	if el <= 0 {
		return errors.New("stopped during the warm-up, nothing measured")
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	fmt.Fprintf(out, "offered rate %d events/s, batch %d, %d connections, %s measured after %s of warm-up\n", o.rate, o.batch, o.conns, el.Round(time.Millisecond), o.warmup)
	fmt.Fprintf(out, "accepted %d events: %.0f events/s\n", accepted.Load(), float64(accepted.Load())/el.Seconds())
	fmt.Fprintf(out, "ack latency: p50 %s p99 %s max %s (%d POSTs)\n", pct(0.5).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), pct(1).Round(10*time.Microsecond), len(latencies))
	fmt.Fprintf(out, "status codes: %v, transport errors: %d\n", codes, errs.Load())
	if o.metrics != "" {
		p, err := processed(o.metrics)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "processed %.0f events: %.0f events/s (%.0f accepted and not yet processed)\n",
			p-processed0, (p-processed0)/el.Seconds(), float64(accepted.Load())-(p-processed0))
	}
	return nil
}

// processed reads vigil_serve_processed_events_total (all clusters) from a
// vigil /metrics URL; "" reads nothing.
func processed(url string) (float64, error) {
	if url == "" {
		return 0, nil
	}
	resp, err := http.Get(url)
	if err != nil {
		return 0, fmt.Errorf("read metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("read metrics: %s answered %s", url, resp.Status)
	}
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "vigil_serve_processed_events_total") {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				sum += v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read metrics: %w", err)
	}
	return sum, nil
}
