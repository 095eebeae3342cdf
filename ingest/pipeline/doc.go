// Package pipeline is vigil's live detection process as a library: the audit
// webhook, the durable queue behind it, the detection engine, the alert
// store and the operations endpoints, started by New and run by Run.
//
//	webhook ──Publish──▶ Queue ──Read──▶ detect.Engine ──Emit──▶ Alerts ──▶ sinks
//	                                         │   (alerts stored before the batch is acked)
//	                                         └──▶ window state: saved at stop, rebuilt after a crash
//
// The pipeline works against the small interfaces of this package (Queue,
// Alerts, SentSet); the embedded JetStream queue and the sinks dispatcher are
// chosen and built by the caller, so other queues drop in.
//
// Files, one job each: pipeline.go (configuration, lifecycle and the order
// of shutdown), consume.go (the detection loop and the event-time clock),
// alerts.go (alert durability: nothing acknowledged before its alerts are
// stored, nothing sent twice), windows.go (window state across restarts),
// ops.go (/metrics, /healthz, /readyz).
package pipeline
