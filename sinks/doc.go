// Package sinks delivers alerts to the places people read them: files,
// webhooks, Alertmanager, Slack, NATS and Kafka (one package each below
// this one, each with one entry in the table of sink types in registry.go).
//
// Build turns the config's sinks: list and routes: table into a
// Dispatcher. Every alert is redacted once, before any sink sees it, then
// routed: each sink has a minimum severity and include/exclude lists of
// rule ids and tags, and the routes table sends an alert to the sinks of the
// first route whose namespace globs match (or to the default route's).
// Sinks named in no route receive every alert their filter passes.
//
// Delivery has two modes behind the same Dispatch/Close API:
//
//   - in memory (vigil replay): each sink has a bounded buffer and its own
//     goroutine, so a slow or dead sink never blocks Dispatch or another
//     sink; Close flushes.
//   - durable (vigil serve): Dispatch returns once the alerts are stored in
//     the JetStream stream VIGIL_ALERTS, and each sink reads that stream
//     with its own durable consumer, acking after delivery. A crash or an
//     outage loses nothing; alerts a sink rejects for good go to
//     VIGIL_DEADLETTER with the reason. RecentStored reads the newest
//     alerts of the stream back.
//
// In both modes WaitDelivered waits until every sink has finished with
// every alert dispatched so far, so a graceful stop can let them catch up.
//
// Both modes share one retry loop (exponential backoff with jitter,
// honouring Retry-After): a Sink reports whether a failure is worth
// retrying and never retries on its own.
package sinks
