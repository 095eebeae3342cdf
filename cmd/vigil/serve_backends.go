package main

import (
	"context"
	"errors"

	"github.com/vigil-k8s/vigil/ingest/pipeline"
	"github.com/vigil-k8s/vigil/sinks"
)

// openServeBackends opens the queue, the alert store and the responder of
// vigil serve and puts them into pc: the queue the flags and the queue:
// section choose (serve_queue.go), and the sinks in durable mode on the
// alert stream of its JetStream.
func (a *app) openServeBackends(ctx context.Context, f serveFlags, cfg *Config, ss serveSettings, pc *pipeline.Config) (err error) {
	sq, err := a.openServeQueue(ctx, f.queue, ss.Queue, queueSetup{dataDir: f.dataDir, syncAlways: f.syncAlways,
		span: pipeline.RebuildSpan(pc.Rules, pc.Lateness), sentSpan: pipeline.SentSpan(pc.Rules, pc.Lateness),
		metrics: pc.Metrics})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			sq.queue.Close(context.Background())
		}
	}()
	if pc.Webhook.MaxEventBytes > sq.queue.MaxRecordSize() {
		return usagef("serve.max_event_bytes %d is over the queue's limit of %d", pc.Webhook.MaxEventBytes, sq.queue.MaxRecordSize())
	}
	resp, err := a.serveResponder(cfg, pc.Rules, f.dataDir, pc.Metrics)
	if err != nil {
		return err
	}
	// Alerts go to the alert stream and from there to each sink and the
	// responder: their consumers exist before the first alert is stored.
	setup := sinkSetup{output: f.output, metrics: pc.Metrics, js: sq.js, nc: sq.nc,
		durable: sinks.DurableOptions{Replicas: sq.replicas}}
	if resp != nil {
		setup.responder = resp
	}
	disp, err := a.buildSinks(ctx, cfg, setup)
	if err != nil {
		if resp != nil {
			resp.Close()
		}
		return err
	}
	if resp != nil {
		resp.Start(disp)
	}
	pc.Queue, pc.Alerts, pc.SentSet, pc.Snapshots = sq.queue, disp, sq.sent, sq.snapshots
	pc.RecentAlerts = func(ctx context.Context, n int) ([]pipeline.StoredAlert, error) {
		stored, err := disp.RecentStored(ctx, n)
		out := make([]pipeline.StoredAlert, len(stored))
		for i, s := range stored {
			out[i] = pipeline.StoredAlert{Fingerprint: s.Fingerprint, Rule: s.Rule}
		}
		return out, err
	}
	return nil
}

// serveStartError maps what the pipeline refuses to start with to a usage
// error (exit code 2).
func serveStartError(err error) error {
	var ce pipeline.ConfigError
	if errors.As(err, &ce) {
		return usageError{err}
	}
	return err
}

var _ pipeline.Alerts = (*sinks.Dispatcher)(nil)
