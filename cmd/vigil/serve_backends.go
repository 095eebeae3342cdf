package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/vigil-k8s/vigil/ingest/jetstream"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
	"github.com/vigil-k8s/vigil/sinks"
)

// openServeBackends opens the queue and the alert store of vigil serve and
// puts them into pc: the embedded JetStream queue in the data dir, and the
// sinks in durable mode on its VIGIL_ALERTS stream.
func (a *app) openServeBackends(ctx context.Context, f serveFlags, cfg *Config, ss serveSettings, pc *pipeline.Config) (err error) {
	span := pipeline.RebuildSpan(pc.Rules, pc.Lateness)
	q, err := jetstream.Open(ctx, jetstream.Options{
		Dir:             filepath.Join(f.dataDir, "queue"),
		SyncAlways:      f.syncAlways || ss.Queue.SyncAlways,
		MaxPendingBytes: ss.Queue.MaxPendingBytes,
		MaxBytes:        ss.Queue.MaxBytes,
		Retention:       max(ss.Queue.Retention.D(), span+time.Hour),
		DedupWindow:     ss.Queue.DedupWindow.D(),
		DedupMaxKeys:    ss.Queue.DedupMaxKeys,
		Logger:          a.logger.With("component", "queue"),
		Metrics:         pc.Metrics,
	})
	if err != nil {
		return fmt.Errorf("open queue: %w", err)
	}
	defer func() {
		if err != nil {
			q.Close(context.Background())
		}
	}()
	if pc.Webhook.MaxEventBytes > q.MaxRecordSize() {
		return usagef("serve.max_event_bytes %d is over the queue's limit of %d", pc.Webhook.MaxEventBytes, q.MaxRecordSize())
	}
	fps, err := q.Fingerprints(ctx, span+time.Hour)
	if err != nil {
		return err
	}
	// Alerts go to VIGIL_ALERTS and from there to each sink: the sinks'
	// consumers exist before the first alert can be published.
	disp, err := a.buildSinks(ctx, cfg, sinkSetup{output: f.output, metrics: pc.Metrics, js: q.JetStream(), nc: q.Conn()})
	if err != nil {
		return err
	}
	pc.Queue, pc.Alerts, pc.SentSet = q, disp, fps
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
