// Package auditgen generates large, realistic kube-apiserver audit logs for
// benchmarks and load tests.
//
// The output looks like what the apiserver's log backend writes for a busy
// cluster (audit.k8s.io/v1 events, one JSON object per line, about 1.2 KB
// each on average): node and leader-election lease renewals, kubelets
// reading the pods, configmaps and secrets they mount, controllers and the
// scheduler at work, events, token and access reviews, health checks,
// discovery, operators (monitoring, cert-manager, ingress, GitOps), a CI
// service account and people using kubectl. A few percent of the events are
// what the built-in rules look for: secret reads outside the control plane,
// exec, attach and port-forward, RBAC bindings, denied requests.
//
// Events are written in log order: the order in which requests reach a
// stage. requestReceivedTimestamp therefore mostly increases, with the tails
// a real log has: slow requests finish after faster later ones, and
// long-running requests (watch, exec) log ResponseStarted when they begin
// and ResponseComplete, with the same auditID, minutes later.
//
// Options.Profile chooses the traffic: the default mix above, or
// ProfileBenignDay, a day of normal life and nothing else (people, CI
// deploys and jobs, Helm installs, operators, node churn) on which the
// built-in rules should raise nothing above low.
//
// A Generator is deterministic: the same Options give the same bytes.
package auditgen
