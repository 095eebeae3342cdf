package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/detect/incident"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
	"github.com/vigil-k8s/vigil/ingest/webhook"
)

// serveFlags are the flags of vigil serve.
type serveFlags struct {
	ruleFlags
	queue                             queueFlags
	listen, insecureListen, opsListen string
	dataDir, advertiseURL, output     string
	syncAlways, pprof                 bool
	// beforeBatch, when set, runs before detection takes each batch (tests
	// stall detection with it).
	beforeBatch func(ctx context.Context)
}

func (a *app) serveCmd() *cobra.Command {
	var f serveFlags
	c := &cobra.Command{
		Use:   "serve",
		Short: "Receive the apiserver's audit webhook and detect live",
		Long: `vigil serve receives kube-apiserver's audit webhook (an EventList POSTed to
/audit or /audit/{cluster}), stores every batch on a durable queue in the data
dir before answering 200, and runs the rules on it. Alerts go to stdout or -o
FILE as JSON lines, or to the sinks of the config file; they are stored in
the VIGIL_ALERTS stream before the events that raised them are acknowledged.

With no certificate configured it creates a CA, a serving certificate and a
client certificate in DATA-DIR/tls and writes DATA-DIR/webhook-kubeconfig.yaml
for kube-apiserver --audit-webhook-config-file. See docs/serve.md.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error { return a.serve(c.Context(), f) },
	}
	f.register(c)
	f.queue.register(c.Flags())
	fl := c.Flags()
	fl.StringVar(&f.listen, "listen", ":8443", "HTTPS address of the webhook")
	fl.StringVar(&f.insecureListen, "insecure-listen", "", "serve the webhook over plain HTTP on this address instead (local trials only)")
	fl.StringVar(&f.opsListen, "ops-listen", ":9090", "plain HTTP address of /metrics, /healthz and /readyz (empty: off)")
	fl.StringVar(&f.dataDir, "data-dir", "./vigil-data", "directory of the queue, certificates and state")
	fl.StringVar(&f.advertiseURL, "advertise-url", "", "URL the apiserver uses to reach vigil (default https://HOSTNAME:PORT/audit); its host goes into the serving certificate")
	fl.StringVarP(&f.output, "output", "o", "", "also append alerts to FILE as JSON lines (without sinks in the config: instead of stdout)")
	fl.BoolVar(&f.syncAlways, "sync-always", false, "sync every queue write to disk (survives power loss; slower)")
	fl.BoolVar(&f.pprof, "pprof", false, "serve Go's /debug/pprof profiles on the ops address (for performance work; keep the ops port private)")
	return c
}

func (a *app) serve(ctx context.Context, f serveFlags) error {
	cfg, rs, err := f.ruleSet()
	if err != nil {
		return err
	}
	ss, err := serveConfig(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	pc := pipeline.Config{
		Rules: rs, DataDir: f.dataDir, Listen: cmp.Or(f.insecureListen, f.listen),
		OpsListen: f.opsListen, Pprof: f.pprof,
		Workers: cfg.Detect.Workers, Lateness: cfg.lateness(), MaxKeysPerRule: cfg.Detect.MaxKeysPerRule,
		DistinctExact: cfg.Detect.DistinctExact, MemoryLimit: ss.Serve.MemoryLimit,
		SilenceAfter: ss.Serve.SilenceAfter.D(), DrainTimeout: ss.Serve.DrainTimeout.D(),
		Logger: a.logger, Metrics: metrics.NewSet(), BeforeBatch: f.beforeBatch,
		Incidents: incident.NewTracker(incident.Options{Idle: 24 * time.Hour, MaxIncidents: 10_000}),
		Webhook: webhook.Options{Path: ss.Serve.Path, DefaultCluster: cfg.Cluster,
			MaxBodyBytes: ss.Serve.MaxBodyBytes, MaxEventBytes: ss.Serve.MaxEventBytes,
			RetryAfter: ss.Serve.RetryAfter.D()},
	}
	// Certificates and the kubeconfig come first: they need no queue.
	if f.insecureListen == "" {
		t, err := a.setupTLS(f, ss.Serve)
		if err != nil {
			return err
		}
		pc.TLS, pc.Webhook.ClientCerts = t.cfg, t.clientCA != ""
	}
	if ss.Serve.TokensFile != "" {
		if pc.Webhook.Tokens, err = readTokens(ss.Serve.TokensFile); err != nil {
			return err
		}
	}
	if pc.TLS != nil && len(pc.Webhook.Tokens) == 0 && !pc.Webhook.ClientCerts {
		return usagef("serve: no client authentication: set serve.client_ca or serve.tokens_file when serving your own certificate")
	}
	if pc.Sources, err = buildSources(cfg, f.dataDir, a.logger, pc.Metrics, rs); err != nil {
		return err
	}
	if err := a.openServeBackends(ctx, f, cfg, ss, &pc); err != nil {
		return err
	}
	srv, err := pipeline.New(ctx, pc)
	if err != nil {
		return serveStartError(err)
	}
	return srv.Run(ctx)
}
