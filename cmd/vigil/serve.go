package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/valyala/fastjson"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/jetstream"
	"github.com/vigil-k8s/vigil/ingest/tlsutil"
	"github.com/vigil-k8s/vigil/ingest/webhook"
	"github.com/vigil-k8s/vigil/sinks"
)

// SilentRule is the id of the built-in alert raised when a cluster stops
// sending audit events.
const SilentRule = "audit-pipeline-silent"

// serveFlags are the flags of vigil serve.
type serveFlags struct {
	ruleFlags
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

// serveState is a running vigil serve.
type serveState struct {
	log     *slog.Logger
	set     *metrics.Set
	rs      *detect.RuleSet
	rules   map[string]*detect.Rule
	queue   *jetstream.Queue
	recv    *webhook.Receiver
	engine  *detect.Engine
	fps     *jetstream.Fingerprints
	disp    *sinks.Dispatcher
	silence time.Duration
	// beforeBatch is serveFlags.beforeBatch.
	beforeBatch func(ctx context.Context)

	// pending are the alerts emitted since the last flushAlerts, in order;
	// pendingFP their fingerprints. Both are guarded by engineMu.
	pending   []detect.Alert
	pendingFP map[string]bool

	// engineMu serialises the engine: the consumer loop and the idle
	// ticker both drive it.
	engineMu sync.Mutex
	// maxEventTime is the newest event time processed and seenAt the wall
	// time it was seen: the event-time clock advances from there while no
	// events arrive, so windows close on an idle stream.
	maxEventTime, seenAt time.Time
	// rebuild is set while window state is being rebuilt from the stream.
	rebuild      bool
	rebuildStart time.Time
	rebuildFull  bool

	// sinkConsumers are the durable consumers of the sinks, which a
	// graceful stop lets catch up.
	sinkConsumers []string

	consuming bool
	silent    map[string]time.Time // cluster -> last-seen time already alerted

	m serveMetrics
}

type serveMetrics struct {
	alertsSent, alertsDup, alertsSuppressed, rejected, silent *metrics.Counter
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
	s := &serveState{log: a.logger, set: metrics.NewSet(), rs: rs, rules: map[string]*detect.Rule{},
		silence: ss.Serve.SilenceAfter.D(), silent: map[string]time.Time{}, pendingFP: map[string]bool{},
		beforeBatch: f.beforeBatch}
	s.m = serveMetrics{
		alertsSent:       s.set.NewCounter("vigil_serve_alerts_sent_total"),
		alertsDup:        s.set.NewCounter("vigil_serve_alerts_already_sent_total"),
		alertsSuppressed: s.set.NewCounter("vigil_serve_alerts_rebuild_suppressed_total"),
		rejected:         s.set.NewCounter("vigil_serve_rejected_events_total"),
		silent:           s.set.NewCounter("vigil_serve_silent_clusters_total"),
	}
	for _, r := range rs.Rules {
		s.rules[r.Spec.ID] = r
	}
	lateness := cfg.lateness()
	span := rebuildSpan(rs, lateness)

	// Certificates and the kubeconfig come first: they need no queue.
	var tlsCfg *webhookTLS
	if f.insecureListen == "" {
		tlsCfg, err = a.setupTLS(f, ss.Serve)
		if err != nil {
			return err
		}
	}
	var tokens []string
	if ss.Serve.TokensFile != "" {
		if tokens, err = readTokens(ss.Serve.TokensFile); err != nil {
			return err
		}
	}

	q, err := jetstream.Open(ctx, jetstream.Options{
		Dir:             filepath.Join(f.dataDir, "queue"),
		SyncAlways:      f.syncAlways || ss.Queue.SyncAlways,
		MaxPendingBytes: ss.Queue.MaxPendingBytes,
		MaxBytes:        ss.Queue.MaxBytes,
		Retention:       max(ss.Queue.Retention.D(), span+time.Hour),
		DedupWindow:     ss.Queue.DedupWindow.D(),
		DedupMaxKeys:    ss.Queue.DedupMaxKeys,
		Logger:          a.logger.With("component", "queue"),
		Metrics:         s.set,
	})
	if err != nil {
		return fmt.Errorf("open queue: %w", err)
	}
	s.queue = q
	defer q.Close(context.Background())
	if s.fps, err = q.Fingerprints(ctx, span+time.Hour); err != nil {
		return err
	}
	// Alerts go to VIGIL_ALERTS and from there to each sink: the sinks'
	// consumers exist before the first alert can be published.
	s.disp, err = a.buildSinks(ctx, cfg, sinkSetup{output: f.output, metrics: s.set, js: q.JetStream(), nc: q.Conn()})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.disp.Close(cctx); err != nil {
			a.logger.Warn("close sinks", "err", err)
		}
	}()
	s.sinkConsumers, err = sinkConsumers(cfg, f.output)
	if err != nil {
		return err
	}
	if err := s.reconcileAlerts(ctx); err != nil {
		return err
	}
	s.engine, err = detect.New(detect.Options{
		Rules: rs, Workers: cfg.Detect.Workers, Emit: s.emit, Metrics: s.set,
		Logger: a.logger.With("component", "detect"), Lateness: lateness,
		MaxKeysPerRule: cfg.Detect.MaxKeysPerRule,
		// The queue drops duplicates, with larger bounds.
		SourceDedups: true,
		OnReject: func(r ingest.Record, err error) {
			s.m.rejected.Inc()
			s.log.Warn("event rejected by detection", "cluster", r.Cluster, "origin", r.Origin, "err", err)
		},
	})
	if err != nil {
		return fmt.Errorf("start detection: %w", err)
	}

	// After a graceful stop the window state was saved: restore it. After
	// a crash there is none, and the stream is re-read instead.
	restored, err := s.restoreWindows(f.dataDir)
	if err != nil {
		return err
	}
	if !restored {
		if err := s.rebuildWindows(ctx, span); err != nil {
			return err
		}
	}

	maxEvent := ss.Serve.MaxEventBytes
	if maxEvent == 0 {
		maxEvent = min(webhook.DefaultMaxEventBytes, q.MaxRecordSize())
	}
	if maxEvent > q.MaxRecordSize() {
		return usagef("serve.max_event_bytes %d is over the queue's limit of %d", maxEvent, q.MaxRecordSize())
	}
	s.recv, err = webhook.New(webhook.Options{
		Queue: q, DeadLetters: q, Path: ss.Serve.Path, DefaultCluster: cfg.Cluster,
		MaxBodyBytes: ss.Serve.MaxBodyBytes, MaxEventBytes: maxEvent,
		Tokens: tokens, ClientCerts: tlsCfg != nil && tlsCfg.clientCA != "",
		RetryAfter: ss.Serve.RetryAfter.D(), Logger: a.logger.With("component", "webhook"), Metrics: s.set,
	})
	if err != nil {
		return usageError{err}
	}
	if f.insecureListen == "" && len(tokens) == 0 && tlsCfg.clientCA == "" {
		return usagef("serve: no client authentication: set serve.client_ca or serve.tokens_file when serving your own certificate")
	}

	// Listeners: bind all first so a taken port fails the start cleanly.
	addr := cmp.Or(f.insecureListen, f.listen)
	wl, err := net.Listen("tcp", addr)
	if err != nil {
		return usagef("listen on %s: %w", addr, err)
	}
	whSrv := &http.Server{Handler: s.recv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(a.logger.With("component", "webhook").Handler(), slog.LevelWarn)}
	scheme := "http"
	if tlsCfg != nil {
		whSrv.TLSConfig = tlsCfg.cfg
		scheme = "https"
	}
	var ol net.Listener
	if f.opsListen != "" {
		if ol, err = net.Listen("tcp", f.opsListen); err != nil {
			wl.Close()
			return usagef("listen on %s: %w", f.opsListen, err)
		}
	}
	consumeCtx, stopConsume := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConsume()
	consumerDone := make(chan error, 1)
	go func() { consumerDone <- s.consume(consumeCtx) }()

	errc := make(chan error, 2)
	go func() {
		var err error
		if tlsCfg != nil {
			err = whSrv.ServeTLS(wl, "", "")
		} else {
			err = whSrv.Serve(wl)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("webhook server: %w", err)
		}
	}()
	var opsSrv *http.Server
	if ol != nil {
		opsSrv = &http.Server{Handler: s.opsHandler(f.pprof), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := opsSrv.Serve(ol); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("ops server: %w", err)
			}
		}()
	}
	s.recv.SetReady(true)
	a.logger.Info("vigil serve ready", "webhook", scheme+"://"+wl.Addr().String()+cmp.Or(ss.Serve.Path, webhook.DefaultPath),
		"ops", addrOf(ol), "data_dir", f.dataDir, "rules", len(rs.Rules), "sync_always", f.syncAlways || ss.Queue.SyncAlways)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	case runErr = <-consumerDone:
		consumerDone <- runErr
	}
	// Graceful stop: answer 503, let requests in progress finish, process
	// what the queue holds, flush windows, stop.
	a.logger.Info("vigil serve stopping")
	drainCtx, cancel := context.WithTimeout(context.Background(), ss.Serve.DrainTimeout.D())
	defer cancel()
	if err := s.recv.Drain(drainCtx); err != nil {
		a.logger.Warn("drain webhook", "err", err)
	}
	whSrv.Shutdown(drainCtx)
	s.waitProcessed(drainCtx)
	stopConsume()
	if err := <-consumerDone; err != nil && !errors.Is(err, context.Canceled) && runErr == nil {
		runErr = err
	}
	// Flush gets its own time: it is quick, and it must run even when the
	// drain used all of its own.
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelFlush()
	s.engineMu.Lock()
	if err := s.engine.Flush(flushCtx); err != nil && runErr == nil {
		runErr = fmt.Errorf("flush windows: %w", err)
	}
	if err := s.flushAlerts(flushCtx); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil {
		if err := s.saveWindows(f.dataDir); err != nil {
			runErr = err
		}
	}
	s.engineMu.Unlock()
	// The sinks read VIGIL_ALERTS on their own: give them the rest of the
	// drain time to deliver what is stored, so a stop leaves nothing
	// behind that a sink could take now. What is left is delivered after
	// the restart.
	s.waitSinks(drainCtx)
	if opsSrv != nil {
		opsSrv.Shutdown(flushCtx)
	}
	if err := q.Close(flushCtx); err != nil && runErr == nil {
		runErr = err
	}
	a.logger.Info("vigil serve stopped")
	return runErr
}

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// rebuildSpan is how much already processed history a restart re-reads:
// the longest window plus its cooldown (a cooldown suppresses alerts for
// that long after a window fired), plus the allowed lateness.
func rebuildSpan(rs *detect.RuleSet, lateness time.Duration) time.Duration {
	var longest time.Duration
	for _, r := range rs.Rules {
		if w := r.Spec.Window; w != nil {
			longest = max(longest, time.Duration(w.Within)+time.Duration(w.Cooldown))
		}
	}
	return longest + lateness
}

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

// windowsFile holds the window state saved at a graceful stop.
const windowsFile = "windows.json"

// saveWindows writes the engine's window state into the data dir, through a
// temporary file so a crash mid-write leaves no half a snapshot.
func (s *serveState) saveWindows(dataDir string) error {
	path := filepath.Join(dataDir, windowsFile)
	tmp, err := os.CreateTemp(dataDir, windowsFile+".*")
	if err != nil {
		return fmt.Errorf("save window state: %w", err)
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	err = s.engine.Snapshot(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save window state: %w", err)
	}
	s.log.Info("saved window state", "file", path)
	return nil
}

// restoreWindows loads the state saved at the last graceful stop, if any,
// and removes the file: a later crash must rebuild from the stream, not
// from this older state. An unreadable file is logged and rebuilt over.
func (s *serveState) restoreWindows(dataDir string) (bool, error) {
	path := filepath.Join(dataDir, windowsFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("restore window state: %w", err)
	}
	s.engineMu.Lock()
	rerr := s.engine.Restore(bufio.NewReader(f))
	s.engineMu.Unlock()
	f.Close()
	if err := os.Remove(path); err != nil {
		return false, fmt.Errorf("restore window state: %w", err)
	}
	if errors.Is(rerr, detect.ErrBadSnapshot) {
		s.log.Warn("window state unreadable, rebuilding from the stream", "file", path, "err", rerr)
		return false, nil
	}
	if rerr != nil {
		// Rules changed since the stop: their state was dropped.
		s.log.Warn("window state partly restored", "err", rerr)
	}
	s.log.Info("restored window state", "file", path)
	return true, nil
}

// rebuildWindows re-reads the acknowledged events of the rebuild span so
// that windows open before a restart still fire. Alerts already sent are
// not sent again (fingerprints), and alerts from windows the span may have
// cut short are not sent at all.
func (s *serveState) rebuildWindows(ctx context.Context, span time.Duration) error {
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	s.rebuild = true
	defer func() { s.rebuild = false }()
	start := time.Now()
	info, err := s.queue.Replay(ctx, span, func(b ingest.Batch, ri jetstream.ReplayInfo) error {
		if s.rebuildStart.IsZero() {
			s.rebuildStart = s.batchTime(b)
			s.rebuildFull = ri.FromStart
		}
		err := s.engine.Process(ctx, b)
		s.noteEventTime(b)
		return err
	})
	if err != nil {
		return fmt.Errorf("rebuild windows: %w", err)
	}
	if err := s.flushAlerts(ctx); err != nil {
		return err
	}
	if info.Records > 0 {
		s.log.Info("rebuilt window state", "records", info.Records, "messages", info.Messages,
			"from", info.Start, "to", info.End, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// batchTime returns the event time of a batch's first record.
func (s *serveState) batchTime(b ingest.Batch) time.Time {
	for _, r := range b.Records {
		if t, ok := eventTime(r.Data); ok {
			return t
		}
	}
	return time.Time{}
}

func eventTime(data []byte) (time.Time, bool) {
	v := fastjson.GetBytes(data, "requestReceivedTimestamp")
	if v == nil {
		v = fastjson.GetBytes(data, "stageTimestamp")
	}
	t, err := ingest.ParseTime(v)
	return t, err == nil && v != nil
}

// noteEventTime advances the event-time clock with the batch's last event.
func (s *serveState) noteEventTime(b ingest.Batch) {
	if len(b.Records) == 0 {
		return
	}
	if t, ok := eventTime(b.Records[len(b.Records)-1].Data); ok && t.After(s.maxEventTime) {
		s.maxEventTime = t
	}
	s.seenAt = time.Now()
}

// emit is the engine's Emit: it leaves out alerts already sent and
// collects the rest for flushAlerts. It runs with engineMu held.
func (s *serveState) emit(al detect.Alert) error {
	ctx := context.Background()
	if s.rebuild && !s.rebuildFull {
		if r := s.rules[al.Rule]; r != nil && r.Spec.Window != nil {
			w := r.Spec.Window
			if al.FirstTime.Before(s.rebuildStart.Add(time.Duration(w.Within) + time.Duration(w.Cooldown))) {
				// The window may have started before the re-read span:
				// what it says now is not what the first run saw.
				s.m.alertsSuppressed.Inc()
				return nil
			}
		}
	}
	if s.pendingFP[al.Fingerprint] {
		s.m.alertsDup.Inc()
		return nil
	}
	sent, err := s.fps.Has(ctx, al.Fingerprint)
	if err != nil {
		return err
	}
	if sent {
		s.m.alertsDup.Inc()
		return nil
	}
	s.pending = append(s.pending, al)
	s.pendingFP[al.Fingerprint] = true
	return nil
}

// flushAlerts stores the pending alerts in VIGIL_ALERTS and then records
// their fingerprints; it runs with engineMu held, before the events that
// raised the alerts are acknowledged. The order matters for a crash: an
// alert stored but not yet recorded is raised again after the restart and
// published with the same message id (the fingerprint), which JetStream
// drops within its duplicate window, and reconcileAlerts records it at
// start in any case. On error the alerts stay pending for the next flush.
func (s *serveState) flushAlerts(ctx context.Context) error {
	if len(s.pending) == 0 {
		return nil
	}
	if err := s.disp.Dispatch(ctx, s.pending...); err != nil {
		return fmt.Errorf("store alerts: %w", err)
	}
	for _, al := range s.pending {
		if err := s.fps.Add(ctx, al.Fingerprint, []byte(al.Rule+" "+al.Time.UTC().Format(time.RFC3339Nano))); err != nil {
			return err
		}
		delete(s.pendingFP, al.Fingerprint)
	}
	s.m.alertsSent.Add(len(s.pending))
	clear(s.pending)
	s.pending = s.pending[:0]
	return nil
}

// reconcileAlerts records as sent the alerts at the end of VIGIL_ALERTS
// that a crash kept from being recorded: an alert is stored before its
// fingerprint, so only the last few can be missing.
func (s *serveState) reconcileAlerts(ctx context.Context) error {
	const tail = 1000
	fps, err := lastAlertFingerprints(ctx, s.queue.JetStream(), tail)
	if err != nil {
		return err
	}
	added := 0
	for _, fp := range fps {
		sent, err := s.fps.Has(ctx, fp.fingerprint)
		if err != nil {
			return err
		}
		if !sent {
			if err := s.fps.Add(ctx, fp.fingerprint, []byte(fp.rule+" (from "+sinks.AlertStream+")")); err != nil {
				return err
			}
			added++
		}
	}
	if added > 0 {
		s.log.Info("recorded stored alerts as sent", "alerts", added, "stream", sinks.AlertStream)
	}
	return nil
}

type storedAlert struct{ fingerprint, rule string }

// lastAlertFingerprints reads the fingerprints of the last n alerts of
// VIGIL_ALERTS.
func lastAlertFingerprints(ctx context.Context, js natsjs.JetStream, n uint64) ([]storedAlert, error) {
	st, err := js.Stream(ctx, sinks.AlertStream)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", sinks.AlertStream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", sinks.AlertStream, err)
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	first := max(info.State.FirstSeq, info.State.LastSeq-min(info.State.LastSeq, n-1))
	c, err := st.OrderedConsumer(ctx, natsjs.OrderedConsumerConfig{
		DeliverPolicy: natsjs.DeliverByStartSequencePolicy, OptStartSeq: first})
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", sinks.AlertStream, err)
	}
	var out []storedAlert
	for {
		batch, err := c.FetchNoWait(500)
		if err != nil {
			return nil, fmt.Errorf("read stream %s: %w", sinks.AlertStream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err == nil && md.Sequence.Stream > info.State.LastSeq {
				return out, nil
			}
			if fp := fastjson.GetString(m.Data(), "fingerprint"); fp != "" {
				out = append(out, storedAlert{fp, fastjson.GetString(m.Data(), "rule")})
			}
			if err == nil && md.Sequence.Stream == info.State.LastSeq {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read stream %s: %w", sinks.AlertStream, err)
		}
		if got == 0 {
			return out, nil
		}
	}
}

// sinkConsumers names the durable consumers of the configured sinks, the
// way buildSinks adds the -o or default stdout sink.
func sinkConsumers(cfg *Config, output string) ([]string, error) {
	sc, err := cfg.sinkConfig()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range sc.Sinks {
		names = append(names, s.Name)
	}
	switch {
	case output != "":
		names = append(names, "output")
	case len(names) == 0:
		names = append(names, "stdout")
	}
	for i, n := range names {
		names[i] = "sink-" + n
	}
	return names, nil
}

// waitSinks waits until every sink's consumer has taken and acknowledged
// every stored alert, or ctx is done.
func (s *serveState) waitSinks(ctx context.Context) {
	st, err := s.queue.JetStream().Stream(ctx, sinks.AlertStream)
	if err != nil {
		s.log.Warn("check sink delivery", "err", err)
		return
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		behind := ""
		for _, name := range s.sinkConsumers {
			c, err := st.Consumer(ctx, name)
			if err != nil {
				behind = name
				break
			}
			ci, err := c.Info(ctx)
			if err != nil || ci.NumPending+uint64(ci.NumAckPending) > 0 {
				behind = name
				break
			}
		}
		if behind == "" {
			return
		}
		select {
		case <-ctx.Done():
			s.log.Warn("stopping with alerts not yet delivered; they are delivered after the restart", "consumer", behind)
			return
		case <-t.C:
		}
	}
}

// consume is the detection loop: read a batch, process it (which emits
// and then acknowledges), and while idle advance the event-time clock and
// check for silent clusters.
func (s *serveState) consume(ctx context.Context) error {
	s.engineMu.Lock()
	s.consuming = true
	s.engineMu.Unlock()
	defer func() {
		s.engineMu.Lock()
		s.consuming = false
		s.engineMu.Unlock()
	}()
	processed := map[string]*metrics.Counter{}
	lastTick := time.Now()
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		b, err := s.queue.Read(rctx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil && s.beforeBatch != nil {
			s.beforeBatch(ctx)
		}
		switch {
		case err == nil:
			// Alerts are made durable before the batch is acknowledged.
			ack := b.Ack
			b.Ack = func(ctx context.Context, err error) error {
				if err == nil {
					if ferr := s.flushAlerts(ctx); ferr != nil {
						ack(ctx, ferr)
						return ferr
					}
				}
				return ack(ctx, err)
			}
			s.engineMu.Lock()
			perr := s.engine.Process(ctx, b)
			s.noteEventTime(b)
			s.engineMu.Unlock()
			if perr != nil {
				// The batch was not acknowledged and comes again.
				s.log.Error("process batch", "err", perr, "records", len(b.Records))
				select {
				case <-time.After(time.Second):
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			for _, r := range b.Records {
				c := processed[r.Cluster]
				if c == nil {
					c = s.set.GetOrCreateCounter(`vigil_serve_processed_events_total{cluster="` + r.Cluster + `"}`)
					processed[r.Cluster] = c
				}
				c.Inc()
			}
		case errors.Is(err, context.DeadlineExceeded):
		default:
			return fmt.Errorf("read queue: %w", err)
		}
		if now := time.Now(); now.Sub(lastTick) >= time.Second {
			lastTick = now
			if errors.Is(err, context.DeadlineExceeded) {
				// Idle: correct the pending estimate of the queue.
				s.queue.Drained(ctx)
			}
			if err := s.tick(ctx, now); err != nil {
				s.log.Error("advance windows", "err", err)
			}
		}
	}
}

// tick moves the event-time clock by the wall time passed since the last
// event, so windows close while nothing arrives, and raises
// audit-pipeline-silent for clusters that stopped sending.
func (s *serveState) tick(ctx context.Context, now time.Time) error {
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	defer func() {
		if err := s.flushAlerts(ctx); err != nil {
			s.log.Error("flush alerts", "err", err)
		}
	}()
	if !s.maxEventTime.IsZero() {
		if err := s.engine.Advance(ctx, s.maxEventTime.Add(now.Sub(s.seenAt))); err != nil {
			return err
		}
	}
	if s.recv == nil {
		return nil
	}
	seen := s.recv.LastSeen()
	clusters := make([]string, 0, len(seen))
	for c := range seen {
		clusters = append(clusters, c)
	}
	sort.Strings(clusters)
	for _, c := range clusters {
		last := seen[c]
		if now.Sub(last) < s.silence || s.silent[c].Equal(last) {
			continue
		}
		s.silent[c] = last
		s.m.silent.Inc()
		if err := s.emit(silentAlert(c, last, now)); err != nil {
			return err
		}
	}
	return nil
}

func silentAlert(cluster string, last, now time.Time) detect.Alert {
	name := cmp.Or(cluster, "(default)")
	return detect.Alert{
		Rule: SilentRule, Title: "Audit events stopped arriving", Severity: detect.SeverityHigh,
		Tags:        []string{"vigil.pipeline", "attack.defense-evasion", "T1562.008"},
		Description: "A cluster that was sending audit events has sent none for longer than serve.silence_after: the apiserver, its webhook configuration or the network path may have failed, or audit logging was turned off.",
		Message:     fmt.Sprintf("cluster %s sent no audit events for %s (last at %s)", name, now.Sub(last).Round(time.Second), last.UTC().Format(time.RFC3339)),
		Time:        now, Cluster: cluster, GroupKey: cluster, Count: 0, AuditIDs: []string{},
		FirstTime: last, LastTime: now,
		Fingerprint: detect.Fingerprint(SilentRule, cluster, last),
	}
}

// waitProcessed waits until detection acknowledged everything stored or
// ctx is done (graceful shutdown).
func (s *serveState) waitProcessed(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		done, err := s.queue.Drained(ctx)
		if done {
			return
		}
		if err != nil {
			s.log.Warn("check queue", "err", err)
		}
		select {
		case <-ctx.Done():
			s.log.Warn("stopping with unprocessed events; they are processed after the restart", "bytes", s.queue.Pending())
			return
		case <-t.C:
		}
	}
}

// opsHandler serves /metrics, /healthz and /readyz, and with withPprof
// Go's profiles under /debug/pprof/.
func (s *serveState) opsHandler(withPprof bool) http.Handler {
	mux := http.NewServeMux()
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.set.WritePrometheus(w)
		metrics.WriteProcessMetrics(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		s.engineMu.Lock()
		consuming := s.consuming
		s.engineMu.Unlock()
		switch {
		case !s.recv.Ready():
			http.Error(w, "not ready: webhook not accepting (starting or draining)", http.StatusServiceUnavailable)
			return
		case !consuming:
			http.Error(w, "not ready: detection not running", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}
