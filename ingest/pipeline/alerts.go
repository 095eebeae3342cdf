package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/vigil-k8s/vigil/detect"
)

// SilentRule is the id of the built-in alert raised when a cluster stops
// sending audit events.
const SilentRule = "audit-pipeline-silent"

// alertBuffer holds the alerts emitted since the last flushAlerts, in
// order, and their fingerprints. It is guarded by Server.engineMu.
type alertBuffer struct {
	pending []detect.Alert
	fp      map[string]bool
}

// emit is the engine's Emit: it collects the alert, and the incident alert
// it causes, for flushAlerts. It runs with engineMu held.
func (s *Server) emit(al detect.Alert) error {
	if err := s.collect(al); err != nil || s.cfg.Incidents == nil {
		return err
	}
	// Alerts sent before a restart are shown to the tracker too: it
	// rebuilds the same incidents, and their alerts are dropped as sent.
	c, ok := s.cfg.Incidents.Observe(al)
	if !ok {
		return nil
	}
	s.m.incidents.Inc()
	return s.collect(c.Alert())
}

// collect leaves out alerts already sent and keeps the rest for
// flushAlerts.
func (s *Server) collect(al detect.Alert) error {
	if s.rebuild.cutShort(s.rules[al.Rule], al) {
		s.m.alertsSuppressed.Inc()
		return nil
	}
	if s.alerts.fp[al.Fingerprint] {
		s.m.alertsDup.Inc()
		return nil
	}
	if s.cfg.SentSet != nil {
		sent, err := s.cfg.SentSet.Has(context.Background(), al.Fingerprint)
		if err != nil {
			return err
		}
		if sent {
			s.m.alertsDup.Inc()
			return nil
		}
	}
	s.alerts.pending = append(s.alerts.pending, al)
	s.alerts.fp[al.Fingerprint] = true
	return nil
}

// flushAlerts stores the pending alerts and then records their
// fingerprints; it runs with engineMu held, before the events that raised
// the alerts are acknowledged. The order matters for a crash: an alert
// stored but not yet recorded is raised again after the restart and stored
// under the same fingerprint, which the alert store drops as a duplicate,
// and reconcileAlerts records it at start in any case. On error the alerts
// stay pending for the next flush.
func (s *Server) flushAlerts(ctx context.Context) error {
	b := &s.alerts
	if len(b.pending) == 0 {
		return nil
	}
	if err := s.cfg.Alerts.Dispatch(ctx, b.pending...); err != nil {
		return fmt.Errorf("store alerts: %w", err)
	}
	for _, al := range b.pending {
		if s.cfg.SentSet != nil {
			if err := s.cfg.SentSet.Add(ctx, al.Fingerprint, []byte(al.Rule+" "+al.Time.UTC().Format(time.RFC3339Nano))); err != nil {
				return err
			}
		}
		delete(b.fp, al.Fingerprint)
	}
	s.m.alertsSent.Add(len(b.pending))
	clear(b.pending)
	b.pending = b.pending[:0]
	return nil
}

// reconcileAlerts records as sent the newest stored alerts that a crash
// kept from being recorded: an alert is stored before its fingerprint, so
// only the last few can be missing.
func (s *Server) reconcileAlerts(ctx context.Context) error {
	if s.cfg.RecentAlerts == nil || s.cfg.SentSet == nil {
		return nil
	}
	const tail = 1000
	stored, err := s.cfg.RecentAlerts(ctx, tail)
	if err != nil {
		return fmt.Errorf("read stored alerts: %w", err)
	}
	added := 0
	for _, a := range stored {
		sent, err := s.cfg.SentSet.Has(ctx, a.Fingerprint)
		if err != nil {
			return err
		}
		if !sent {
			if err := s.cfg.SentSet.Add(ctx, a.Fingerprint, []byte(a.Rule+" (from the alert store)")); err != nil {
				return err
			}
			added++
		}
	}
	if added > 0 {
		s.log.Info("recorded stored alerts as sent", "alerts", added)
	}
	return nil
}

// silentAlert is the alert of a cluster silent since last. With grid set,
// its fingerprint holds last truncated to it, so that replicas that saw
// the cluster's last events a moment apart raise the same alert.
func silentAlert(cluster string, last, now time.Time, grid time.Duration) detect.Alert {
	name := cmp.Or(cluster, "(default)")
	return detect.Alert{
		Rule: SilentRule, Title: "Audit events stopped arriving", Severity: detect.SeverityHigh,
		Tags:        []string{"vigil.pipeline", "attack.defense-evasion", "T1562.008"},
		Description: "A cluster that was sending audit events has sent none for longer than serve.silence_after: the apiserver, its webhook configuration or the network path may have failed, or audit logging was turned off.",
		Message:     fmt.Sprintf("cluster %s sent no audit events for %s (last at %s)", name, now.Sub(last).Round(time.Second), last.UTC().Format(time.RFC3339)),
		Time:        now, Cluster: cluster, GroupKey: cluster, Count: 0, AuditIDs: []string{},
		FirstTime: last, LastTime: now,
		Fingerprint: detect.Fingerprint(SilentRule, cluster, last.Truncate(max(grid, 0))),
	}
}
