package sinks

import (
	"fmt"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// sinkMetrics are the per-sink series. All carry the label sink="<name>".
type sinkMetrics struct {
	sent         *metrics.Counter   // vigil_sink_alerts_sent_total
	retried      *metrics.Counter   // vigil_sink_alerts_retried_total: alerts sent again
	failed       *metrics.Counter   // vigil_sink_alerts_failed_total: alerts in failed attempts
	deadLettered *metrics.Counter   // vigil_sink_alerts_deadlettered_total
	dropped      *metrics.Counter   // vigil_sink_alerts_dropped_total: buffer full (replay mode)
	sendDuration *metrics.Histogram // vigil_sink_send_duration_seconds: one Send
	delay        *metrics.Histogram // vigil_sink_delivery_delay_seconds: dispatch to delivery
	// pending (vigil_sink_pending_alerts, the lag) is read from here.
	pending atomic.Int64
}

func newSinkMetrics(set *metrics.Set, name string) *sinkMetrics {
	l := fmt.Sprintf(`{sink=%q}`, name)
	m := &sinkMetrics{
		sent:         set.GetOrCreateCounter("vigil_sink_alerts_sent_total" + l),
		retried:      set.GetOrCreateCounter("vigil_sink_alerts_retried_total" + l),
		failed:       set.GetOrCreateCounter("vigil_sink_alerts_failed_total" + l),
		deadLettered: set.GetOrCreateCounter("vigil_sink_alerts_deadlettered_total" + l),
		dropped:      set.GetOrCreateCounter("vigil_sink_alerts_dropped_total" + l),
		sendDuration: set.GetOrCreateHistogram("vigil_sink_send_duration_seconds" + l),
		delay:        set.GetOrCreateHistogram("vigil_sink_delivery_delay_seconds" + l),
	}
	set.GetOrCreateGauge("vigil_sink_pending_alerts"+l, func() float64 { return float64(m.pending.Load()) })
	return m
}
