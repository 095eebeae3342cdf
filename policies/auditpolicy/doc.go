// Package auditpolicy writes and checks kube-apiserver audit policies
// (audit.k8s.io/v1) for a set of detection rules.
//
// Every rule states in its audit block what it reads (resources, verbs,
// non-resource URLs) and at which level. Generate merges those needs into
// the smallest policy that records them, on top of safe defaults, and
// verifies it. Check takes any policy and says, per detection, whether it
// is covered, degraded (recorded below the level it needs) or blind.
//
// Both decide with the apiserver's own code: policies are decoded into its
// types (strictly, unlike the apiserver, which ignores unknown fields) and
// evaluated with k8s.io/apiserver/pkg/audit/policy. A rule's fire fixtures
// are the evidence: each event is evaluated, reduced to what the policy
// would record (dropped at None or an omitted stage, bodies removed below
// Request and RequestResponse) and the rule must still raise its alerts on
// what is left.
//
// Policy.Sample estimates what a policy keeps of a real audit log.
package auditpolicy
