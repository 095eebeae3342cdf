package detect

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// EvictedRule is the id of the alert raised when a rule's window keys hit
// their bound and the idlest were evicted: an attacker who spreads requests
// over many identities or addresses can hide in what was evicted.
const EvictedRule = "window-keys-evicted"

// ValuesDroppedRule is the id of the alert raised when first_seen keys of a
// rule hit max_values and their values seen longest ago were dropped: seen
// again, such a value is new and alerts once more.
const ValuesDroppedRule = "baseline-values-dropped"

// evictionEvery is the least event time between two eviction alerts of one
// rule.
const evictionEvery = int64(time.Hour)

// valuesReport suffixes the rule id under which the values a first_seen
// rule dropped are reported (a rule id has no space).
const valuesReport = " values"

// evictionReport is what the engine knows about a rule's evictions: when it
// last reported them, and how many were evicted since.
type evictionReport struct {
	Last    int64 `json:"last"`
	Pending int   `json:"pending,omitempty"`
	// cap is the bound that was hit, for the message.
	Cap int `json:"cap"`
	// Values is set for the report of values a first_seen rule dropped at
	// max_values (Cap) rather than keys.
	Values bool `json:"values,omitempty"`
}

// evictionAlert records what rule r dropped at event time t (keys, or
// values of first_seen keys, each reported on its own) and returns an alert
// if that has not been reported for an hour.
func (e *Engine) evictionAlert(r *Rule, n evictCount, t int64) (Alert, bool) {
	id, count, limit := r.Spec.ID, n.keys, e.maxKeys
	if n.values > 0 {
		id, count, limit = r.Spec.ID+valuesReport, n.values, r.Spec.Window.MaxValues
	}
	rep := e.evicted[id]
	if rep == nil {
		rep = &evictionReport{Last: t - evictionEvery, Cap: limit, Values: n.values > 0}
		e.evicted[id] = rep
	}
	rep.Pending += count
	if t-rep.Last < evictionEvery {
		return Alert{}, false
	}
	a := evictedAlert(id, rep, t)
	rep.Last, rep.Pending = t, 0
	return a, true
}

// dueEvictionAlerts queues the reports held back by the hourly limit once
// the hour has passed.
func (e *Engine) dueEvictionAlerts() {
	ids := make([]string, 0, len(e.evicted))
	for id, rep := range e.evicted {
		if rep.Pending > 0 && e.watermark-rep.Last >= evictionEvery {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		rep := e.evicted[id]
		e.unsent = append(e.unsent, evictedAlert(id, rep, e.watermark))
		rep.Last, rep.Pending = e.watermark, 0
	}
}

func evictedAlert(rule string, rep *evictionReport, t int64) Alert {
	at := unixUTC(t)
	if rep.Values {
		return valuesDroppedAlert(strings.TrimSuffix(rule, valuesReport), rep, at)
	}
	return Alert{
		Rule: EvictedRule, Title: "Window keys evicted at their bound", Severity: SeverityLow,
		Tags: []string{"vigil.detection", "attack.defense-evasion"},
		Description: "A window rule tracked as many keys as detect.max_keys_per_rule allows, and its idlest keys " +
			"were evicted: their counts were lost, so activity spread over very many identities or addresses " +
			"can stay below the rule's threshold. Look for a flood of new identities or addresses, and raise " +
			"the bound if the traffic is legitimate.",
		Message: fmt.Sprintf("rule %s reached its bound of %d window keys: %d idlest keys evicted", rule, rep.Cap, rep.Pending),
		Time:    at, GroupKey: rule, Count: rep.Pending, AuditIDs: []string{},
		FirstTime: at, LastTime: at,
		Fingerprint: Fingerprint(EvictedRule, rule, at),
	}
}

func valuesDroppedAlert(rule string, rep *evictionReport, at time.Time) Alert {
	return Alert{
		Rule: ValuesDroppedRule, Title: "First-seen values dropped at their bound", Severity: SeverityLow,
		Tags: []string{"vigil.detection", "attack.defense-evasion"},
		Description: "Keys of a first_seen rule showed as many values as its window.max_values allows, and the " +
			"values seen longest ago were dropped from their baselines: seen again, such a value is new and " +
			"alerts once more. A credential that shows very many values (namespaces, addresses, clients) is " +
			"either very busy or being used to flood its baseline; raise max_values if it is legitimate.",
		Message: fmt.Sprintf("rule %s reached its bound of %d values per key: %d values dropped", rule, rep.Cap, rep.Pending),
		Time:    at, GroupKey: rule, Count: rep.Pending, AuditIDs: []string{},
		FirstTime: at, LastTime: at,
		Fingerprint: Fingerprint(ValuesDroppedRule, rule, at),
	}
}
