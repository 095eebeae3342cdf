package auditpolicy

import (
	"fmt"
	"slices"
	"strings"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// noiseRule is a safe default that records nothing of high-volume,
// read-only system traffic. Items a detection needs are left out of it.
type noiseRule struct {
	why                  string
	users, groups, verbs []string
	items                []noiseItem
}

// noiseItem is one resource or non-resource URL of a noise rule.
type noiseItem struct {
	group, resource string
	url             string
	// claimed lists the detections that need the item; a claimed item is
	// left out of the rule, so the catch-all records it.
	claimed []string
}

func (it noiseItem) String() string {
	switch {
	case it.url != "":
		return it.url
	case it.group != "":
		return it.resource + "." + it.group
	}
	return it.resource
}

// defaultNoise returns the noise defaults, in policy order.
func defaultNoise() []noiseRule {
	core := func(res ...string) []noiseItem {
		var out []noiseItem
		for _, r := range res {
			out = append(out, noiseItem{resource: r})
		}
		return out
	}
	return []noiseRule{
		{why: "health, readiness and version probes, polled by load balancers and kubelets",
			items: []noiseItem{{url: "/healthz*"}, {url: "/livez*"}, {url: "/readyz*"}, {url: "/version"}}},
		{why: "kube-proxy watches of the service topology, on every node",
			users: []string{"system:kube-proxy"}, verbs: []string{"watch"},
			items: append(core("endpoints", "nodes", "services", "services/status"),
				noiseItem{group: "discovery.k8s.io", resource: "endpointslices"})},
		{why: "kubelets reading their own Node, on every sync",
			groups: []string{"system:nodes"}, verbs: []string{"get", "list", "watch"},
			items: core("nodes", "nodes/status")},
		{why: "leader-election and node-heartbeat lease renewals, every few seconds per component",
			verbs: []string{"get", "list", "watch", "update"},
			items: []noiseItem{{group: "coordination.k8s.io", resource: "leases"}}},
		{why: "reads of Events, which controllers and dashboards poll",
			verbs: []string{"get", "list", "watch"},
			items: []noiseItem{{resource: "events"}, {group: "events.k8s.io", resource: "events"}}},
	}
}

// release marks the items pred selects as needed by rule and reports
// whether an item was newly claimed.
func (nr *noiseRule) release(pred func(noiseItem) bool, rule string) bool {
	changed := false
	for i := range nr.items {
		it := &nr.items[i]
		if !pred(*it) || slices.Contains(it.claimed, rule) {
			continue
		}
		changed = changed || len(it.claimed) == 0
		it.claimed = append(it.claimed, rule)
		slices.Sort(it.claimed)
	}
	return changed
}

// claimedList describes the claimed items, "nodes (rule-a, rule-b)".
func (nr *noiseRule) claimedList() []string {
	var out []string
	for _, it := range nr.items {
		if len(it.claimed) > 0 {
			out = append(out, fmt.Sprintf("%s (%s)", it, strings.Join(it.claimed, ", ")))
		}
	}
	return out
}

// policyRule returns the rule over the unclaimed items; false when none is
// left.
func (nr *noiseRule) policyRule() (auditv1.PolicyRule, bool) {
	r := auditv1.PolicyRule{Level: auditv1.LevelNone, Users: nr.users, UserGroups: nr.groups, Verbs: nr.verbs}
	byGroup := map[string][]string{}
	for _, it := range nr.items {
		switch {
		case len(it.claimed) > 0:
		case it.url != "":
			r.NonResourceURLs = append(r.NonResourceURLs, it.url)
		default:
			byGroup[it.group] = append(byGroup[it.group], it.resource)
		}
	}
	for _, g := range sortedKeys(byGroup) {
		r.Resources = append(r.Resources, auditv1.GroupResources{Group: g, Resources: byGroup[g]})
	}
	return r, len(r.Resources) > 0 || len(r.NonResourceURLs) > 0
}

// matches reports whether the item, under the rule's user and verb
// selectors, matches a request (with the apiserver's matcher).
func (it noiseItem) matches(nr noiseRule, a authorizer.Attributes) bool {
	r := auditinternal.PolicyRule{Level: auditinternal.LevelMetadata, Users: nr.users, UserGroups: nr.groups, Verbs: nr.verbs}
	if it.url != "" {
		r.NonResourceURLs = []string{it.url}
	} else {
		r.Resources = []auditinternal.GroupResources{{Group: it.group, Resources: []string{it.resource}}}
	}
	e := policy.NewPolicyRuleEvaluator(&auditinternal.Policy{Rules: []auditinternal.PolicyRule{r}})
	return e.EvaluatePolicyRule(a).Level != auditinternal.LevelNone
}
