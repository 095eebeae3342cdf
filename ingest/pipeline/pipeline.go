package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest/partition"
	"github.com/vigil-k8s/vigil/ingest/webhook"
)

// ConfigError is an error of New that the user must fix in the
// configuration (a bad setting, an address that cannot be bound), as
// opposed to a failure of the moment.
type ConfigError struct{ Err error }

func (e ConfigError) Error() string { return e.Err.Error() }
func (e ConfigError) Unwrap() error { return e.Err }

// Server is a running live pipeline.
type Server struct {
	cfg    Config
	log    *slog.Logger
	set    *metrics.Set
	rules  map[string]*detect.Rule
	recv   *webhook.Receiver
	whSrv  *http.Server
	wl, ol net.Listener
	// parted is the queue when it is partitioned (cfg.Queue), else nil.
	parted partition.Reader

	// engineMu serialises the engines and the fields below it: the consume
	// loop and the idle ticker both drive them.
	engineMu sync.Mutex
	// whole is the detection state of an unpartitioned queue; parts holds
	// that of each partition this replica owns.
	whole   *partState
	parts   map[int]*partState
	alerts  alertBuffer
	rebuild rebuildState
	silent  map[string]time.Time // cluster -> last-seen time already alerted

	// consuming is read by /readyz, which must never wait for the engine.
	consuming atomic.Bool
	ran       atomic.Bool
	mem       *memoryGuard
	closeOnce sync.Once
	closeErr  error
	m         serverMetrics
}

type serverMetrics struct {
	alertsSent, alertsDup, alertsSuppressed, rejected, silent, incidents *metrics.Counter
	// Partitioned queues: window state restored from a snapshot or
	// rebuilt from the span, snapshots saved and failed.
	fromSnapshot, fromSpan, saves, saveErrors *metrics.Counter
}

// New checks cfg, restores or rebuilds window state, and binds the
// listeners, so that a bad setting or a taken port fails here. New takes
// ownership of cfg.Queue and cfg.Alerts: they are closed at the end of Run,
// by Close, or by New itself when it fails.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.Queue == nil || cfg.Alerts == nil || cfg.Rules == nil {
		return nil, ConfigError{errors.New("pipeline: Config.Queue, Alerts and Rules are required")}
	}
	s := &Server{cfg: cfg, log: cfg.Logger, set: cfg.Metrics, rules: map[string]*detect.Rule{}, silent: map[string]time.Time{}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if cfg.DataDir == "" {
		return nil, ConfigError{errors.New("pipeline: Config.DataDir is required")}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.set == nil {
		s.set = metrics.NewSet()
	}
	if s.cfg.SilenceAfter <= 0 {
		s.cfg.SilenceAfter = 10 * time.Minute
	}
	if s.cfg.DrainTimeout <= 0 {
		s.cfg.DrainTimeout = 30 * time.Second
	}
	if s.cfg.SnapshotInterval <= 0 {
		s.cfg.SnapshotInterval = 30 * time.Second
	}
	s.m = serverMetrics{
		alertsSent:       s.set.NewCounter("vigil_serve_alerts_sent_total"),
		alertsDup:        s.set.NewCounter("vigil_serve_alerts_already_sent_total"),
		alertsSuppressed: s.set.NewCounter("vigil_serve_alerts_rebuild_suppressed_total"),
		rejected:         s.set.NewCounter("vigil_serve_rejected_events_total"),
		silent:           s.set.NewCounter("vigil_serve_silent_clusters_total"),
		incidents:        s.set.NewCounter("vigil_serve_incident_alerts_total"),
		fromSnapshot:     s.set.NewCounter(`vigil_serve_partition_restores_total{from="snapshot"}`),
		fromSpan:         s.set.NewCounter(`vigil_serve_partition_restores_total{from="span"}`),
		saves:            s.set.NewCounter("vigil_serve_window_saves_total"),
		saveErrors:       s.set.NewCounter("vigil_serve_window_save_errors_total"),
	}
	for _, r := range cfg.Rules.Rules {
		s.rules[r.Spec.ID] = r
	}
	s.alerts.fp = map[string]bool{}

	if err := s.reconcileAlerts(ctx); err != nil {
		return nil, err
	}
	s.mem = newMemoryGuard(ResolveMemoryLimit(cfg.MemoryLimit), s.set)
	if pr, ok := cfg.Queue.(partition.Reader); ok {
		// Window state comes with each partition as it is gained.
		s.parted, s.parts = pr, map[int]*partState{}
	} else {
		if s.whole, err = s.newPartState(-1); err != nil {
			return nil, err
		}
		if err := s.loadBaselines(); err != nil {
			return nil, err
		}
		// After a graceful stop the window state was saved: restore it.
		// After a crash there is none, and the stream is re-read instead.
		restored, err := s.restoreWindows()
		if err != nil {
			return nil, err
		}
		if !restored {
			if err := s.rebuildWindows(ctx); err != nil {
				return nil, err
			}
		}
	}

	wo := cfg.Webhook
	wo.Queue, wo.DeadLetters = s.publisher(), cfg.Queue
	wo.Logger, wo.Metrics = s.log.With("component", "webhook"), s.set
	if wo.MaxEventBytes == 0 {
		wo.MaxEventBytes = min(webhook.DefaultMaxEventBytes, cfg.Queue.MaxRecordSize())
	}
	if wo.MaxEventBytes > cfg.Queue.MaxRecordSize() {
		return nil, ConfigError{fmt.Errorf("max event size %d is over the queue's limit of %d", wo.MaxEventBytes, cfg.Queue.MaxRecordSize())}
	}
	if s.recv, err = webhook.New(wo); err != nil {
		return nil, ConfigError{err}
	}

	// Listeners: bind all first so a taken port fails the start cleanly.
	if s.wl, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, ConfigError{fmt.Errorf("listen on %s: %w", cfg.Listen, err)}
	}
	if cfg.OpsListen != "" {
		if s.ol, err = net.Listen("tcp", cfg.OpsListen); err != nil {
			return nil, ConfigError{fmt.Errorf("listen on %s: %w", cfg.OpsListen, err)}
		}
	}
	s.whSrv = &http.Server{Handler: s.recv, TLSConfig: cfg.TLS,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.log.With("component", "webhook").Handler(), slog.LevelWarn)}
	return s, nil
}

// publisher is the queue as inputs see it: refused while memory is short.
func (s *Server) publisher() Publisher { return guardedPublisher{s.cfg.Queue, s.mem} }

// WebhookAddr is the address the webhook listens on.
func (s *Server) WebhookAddr() net.Addr { return s.wl.Addr() }

// OpsAddr is the address of the operations endpoints (nil when off).
func (s *Server) OpsAddr() net.Addr {
	if s.ol == nil {
		return nil
	}
	return s.ol.Addr()
}

// Run serves until ctx is done or a part fails, then stops gracefully:
// the webhook answers 503 and finishes the requests in progress, detection
// processes what the queue holds, the alerts still due are stored, the
// window state is saved, the sinks are given the rest of the drain time to
// deliver, and only then are the alert store and the queue closed. While it
// runs, memory is watched: over the limit, inputs are refused (memory.go).
// Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if s.ran.Swap(true) {
		return errors.New("pipeline: Run called twice")
	}
	consumeCtx, stopConsume := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConsume()
	consumerDone := make(chan error, 1)
	go func() { consumerDone <- s.consume(consumeCtx) }()
	memCtx, stopMem := context.WithCancel(context.WithoutCancel(ctx))
	memDone := make(chan struct{})
	go func() { defer close(memDone); s.mem.run(memCtx) }()
	defer func() { stopMem(); <-memDone }()

	errc := make(chan error, 2+len(s.cfg.Sources))
	srcCtx, stopSources := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSources()
	var sources sync.WaitGroup
	for _, src := range s.cfg.Sources {
		sources.Go(func() {
			if err := src.Run(srcCtx, s.publisher()); err != nil && srcCtx.Err() == nil {
				errc <- fmt.Errorf("source %s: %w", src.Name(), err)
			}
		})
	}
	go func() {
		var err error
		if s.cfg.TLS != nil {
			err = s.whSrv.ServeTLS(s.wl, "", "")
		} else {
			err = s.whSrv.Serve(s.wl)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("webhook server: %w", err)
		}
	}()
	var opsSrv *http.Server
	if s.ol != nil {
		opsSrv = &http.Server{Handler: s.opsHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := opsSrv.Serve(s.ol); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("ops server: %w", err)
			}
		}()
	}
	s.recv.SetReady(true)
	s.log.Info("vigil serve ready", "webhook", s.webhookURL(), "ops", addrString(s.OpsAddr()),
		"data_dir", s.cfg.DataDir, "rules", len(s.cfg.Rules.Rules), "memory_limit", s.mem.limit)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	case runErr = <-consumerDone:
		consumerDone <- runErr
	}
	s.log.Info("vigil serve stopping")
	drainCtx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	if err := s.recv.Drain(drainCtx); err != nil {
		s.log.Warn("drain webhook", "err", err)
	}
	s.whSrv.Shutdown(drainCtx)
	stopSources()
	sources.Wait()
	if s.parted == nil {
		// A partitioned queue hands what this replica holds to the next
		// owner of each partition instead.
		s.waitProcessed(drainCtx)
	}
	stopConsume()
	if err := <-consumerDone; err != nil && !errors.Is(err, context.Canceled) && runErr == nil {
		runErr = err
	}
	// Flush gets its own time: it is quick, and it must run even when the
	// drain used all of its own.
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelFlush()
	if err := s.flushWindows(flushCtx, runErr == nil); err != nil && runErr == nil {
		runErr = err
	}
	// The sinks read the alert store on their own: what they can take in
	// the rest of the drain time is delivered now, the rest after the
	// restart.
	if err := s.cfg.Alerts.WaitDelivered(drainCtx); err != nil {
		s.log.Warn("stopping with alerts not yet delivered; they are delivered after the restart", "err", err)
	}
	if opsSrv != nil {
		opsSrv.Shutdown(flushCtx)
	}
	if err := s.closeBackends(flushCtx); err != nil && runErr == nil {
		runErr = err
	}
	s.log.Info("vigil serve stopped")
	return runErr
}

// flushWindows emits the alerts still due (windows fire on arrival; an
// eviction report may wait for its hour), stores them and, with save,
// writes the window state for the next start.
func (s *Server) flushWindows(ctx context.Context, save bool) error {
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	if s.parted != nil {
		var errs []error
		for _, ps := range s.sortedParts() {
			errs = append(errs, s.flushPartition(ctx, ps, save))
		}
		return errors.Join(errs...)
	}
	if err := s.whole.engine.Flush(ctx); err != nil {
		return fmt.Errorf("flush windows: %w", err)
	}
	if err := s.flushAlerts(ctx); err != nil {
		return err
	}
	if save {
		return errors.Join(s.saveWindows(), s.saveBaselines())
	}
	return nil
}

// Close stops a Server without the graceful drain of Run: the listeners,
// the alert store and the queue are closed (in that order; the alert store
// may depend on the queue's connection). Events not yet acknowledged are
// delivered again after a restart. It is safe to call more than once and
// after Run.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.whSrv != nil {
		s.whSrv.Close()
	}
	return s.closeBackends(ctx)
}

func (s *Server) closeBackends(ctx context.Context) error {
	s.closeOnce.Do(func() {
		for _, l := range []net.Listener{s.wl, s.ol} {
			if l != nil {
				l.Close()
			}
		}
		var errs []error
		if err := s.cfg.Alerts.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close alert store: %w", err))
		}
		if err := s.cfg.Queue.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close queue: %w", err))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *Server) webhookURL() string {
	scheme := "http"
	if s.cfg.TLS != nil {
		scheme = "https"
	}
	path := s.cfg.Webhook.Path
	if path == "" {
		path = webhook.DefaultPath
	}
	return scheme + "://" + s.wl.Addr().String() + path
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
