// Package respond contains what vigil detects: it maps alerts to response
// actions (quarantine a pod, scale its workload to zero, revoke a binding,
// delete a token secret, disable a service account, cordon a node,
// annotate an object, hand the alert to a webhook) and runs them against
// the cluster through client-go.
//
// Every action is dry-run until its config says enforce: true. Each
// action, planned or done, is a Record of its own: a line in the journal
// (JSONL) and an event for the sinks. A Record keeps the state it changed
// (Before), which Undo puts back.
//
// Safety comes first: a Guard refuses targets in protected namespaces
// (kube-system unless allowed, vigil's own), objects of control-plane
// identities and vigil's own service account; rate limits cap the actions
// per minute, per action and in total.
//
// The Responder is a sinks.Sink: vigil serve runs it as one more durable
// consumer of the alert stream, so a crash or an API outage loses no
// planned action. The journal makes a redelivered alert a no-op, and a
// "started" record written before the first change lets an interrupted
// action resume with the state it saw first.
package respond
