package detect

import (
	"fmt"
	"slices"
	"time"
)

// EvictedRule is the id of the alert raised when a rule's window keys hit
// their bound and the idlest were evicted: an attacker who spreads requests
// over many identities or addresses can hide in what was evicted.
const EvictedRule = "window-keys-evicted"

// evictionEvery is the least event time between two eviction alerts of one
// rule.
const evictionEvery = int64(time.Hour)

// evictionReport is what the engine knows about a rule's evictions: when it
// last reported them, and how many were evicted since.
type evictionReport struct {
	Last    int64 `json:"last"`
	Pending int   `json:"pending,omitempty"`
	// cap is the bound that was hit, for the message.
	Cap int `json:"cap"`
}

// evictionAlert records n keys of rule r evicted at event time t and
// returns an alert if the rule has not been reported for an hour.
func (e *Engine) evictionAlert(r *Rule, n int, t int64) (Alert, bool) {
	rep := e.evicted[r.Spec.ID]
	if rep == nil {
		rep = &evictionReport{Last: t - evictionEvery, Cap: e.maxKeys}
		e.evicted[r.Spec.ID] = rep
	}
	rep.Pending += n
	if t-rep.Last < evictionEvery {
		return Alert{}, false
	}
	a := evictedAlert(r.Spec.ID, rep, t)
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
