package incident

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/detect"
)

// Incident is what a set of linked credentials did, as the alerts tell it.
// Its JSON form is documented in docs/incidents.md.
type Incident struct {
	// ID is stable for the same alerts in the same order: it derives from
	// the fingerprint of the incident's first alert.
	ID string `json:"id"`
	// Score ranks incidents: see docs/incidents.md#score.
	Score    int             `json:"score"`
	Severity detect.Severity `json:"severity"`
	Summary  string          `json:"summary"`
	// FirstTime and LastTime are the event times of the earliest and the
	// latest event behind the incident's alerts.
	FirstTime time.Time `json:"firstTime"`
	LastTime  time.Time `json:"lastTime"`
	// Identities are the linked credentials, the most alerting first.
	Identities []Identity `json:"identities"`
	// Links say why identities share the incident.
	Links []Link `json:"links,omitempty"`
	// Tactics are the ATT&CK tactics reached, in matrix order; Stages the
	// kill-chain stages reached, in chain order.
	Tactics    []TacticHit `json:"tactics"`
	Stages     []StageHit  `json:"stages"`
	Techniques []string    `json:"techniques,omitempty"`
	SourceIPs  []Count     `json:"sourceIPs,omitempty"`
	UserAgents []Count     `json:"userAgents,omitempty"`
	// Objects are the objects the alerting requests targeted.
	Objects        []Object  `json:"objects,omitempty"`
	ObjectsOmitted int       `json:"objectsOmitted,omitempty"`
	Rules          []RuleHit `json:"rules"`
	// Activity counts every alert over time, by severity.
	Activity Activity `json:"activity"`
	// AlertCount counts every alert; Alerts lists them in time order, up
	// to the tracker's bound, AlertsOmitted the rest.
	AlertCount    int        `json:"alertCount"`
	Alerts        []AlertRef `json:"alerts"`
	AlertsOmitted int        `json:"alertsOmitted,omitempty"`
}

// Identity is one credential of an incident: a user or service account,
// with the credential ids (token JTI, certificate hash) its alerts carried.
type Identity struct {
	Name string `json:"name"`
	// Kind is user, serviceaccount, node, control-plane, anonymous or
	// unauthenticated.
	Kind        string          `json:"kind"`
	Alerts      int             `json:"alerts"`
	Severity    detect.Severity `json:"severity,omitempty"`
	Credentials []string        `json:"credentials,omitempty"`
	FirstTime   time.Time       `json:"firstTime,omitzero"`
	LastTime    time.Time       `json:"lastTime,omitzero"`
}

// Link joins two identities: From granted, impersonated or minted a token
// for To, or a correlation rule tied their requests together.
type Link struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Kind is binding, impersonation, token or correlation.
	Kind    string    `json:"kind"`
	Rule    string    `json:"rule"`
	Time    time.Time `json:"time"`
	AuditID string    `json:"auditID,omitempty"`
}

// TacticHit is an ATT&CK tactic and when the incident first reached it.
type TacticHit struct {
	Tactic    string    `json:"tactic"`
	FirstTime time.Time `json:"firstTime"`
}

// StageHit is a kill-chain stage and when the incident first reached it.
type StageHit struct {
	Stage     Stage     `json:"stage"`
	FirstTime time.Time `json:"firstTime"`
}

// Count is a value and how many alerts carried it.
type Count struct {
	Value string `json:"value"`
	N     int    `json:"n"`
}

// Object is an object the incident's requests targeted.
type Object struct {
	Resource    string   `json:"resource"`
	Subresource string   `json:"subresource,omitempty"`
	Namespace   string   `json:"namespace,omitempty"`
	Name        string   `json:"name,omitempty"`
	Verbs       []string `json:"verbs"`
	Alerts      int      `json:"alerts"`
	// Written is set when a create, update, patch or delete succeeded.
	Written   bool      `json:"written,omitempty"`
	FirstTime time.Time `json:"firstTime"`
}

// String names the object as kubectl would: pods/exec team-a/web.
func (o Object) String() string {
	r := o.Resource
	if o.Subresource != "" {
		r += "/" + o.Subresource
	}
	ns := o.Namespace
	if o.Resource == "namespaces" {
		// The apiserver sets a namespace's own name as its namespace.
		ns = ""
	}
	switch {
	case ns != "" && o.Name != "":
		return r + " " + ns + "/" + o.Name
	case ns != "":
		return r + " in " + ns
	case o.Name != "":
		return r + " " + o.Name
	}
	return r
}

// Activity is the number of alerts (N) of each severity (Key) in each
// step of StepSeconds starting at Time. The step is a second, coarsened to
// a minute, an hour or a day for long incidents.
type Activity struct {
	StepSeconds int64                    `json:"stepSeconds"`
	Points      []Point[detect.Severity] `json:"points"`
}

// RuleHit is a rule that fired in the incident.
type RuleHit struct {
	Rule     string          `json:"rule"`
	Title    string          `json:"title"`
	Severity detect.Severity `json:"severity"`
	Tactics  []string        `json:"tactics,omitempty"`
	Alerts   int             `json:"alerts"`
	// Events sums the alerts' counts (matching events of windows).
	Events    int       `json:"events"`
	FirstTime time.Time `json:"firstTime"`
	LastTime  time.Time `json:"lastTime"`
}

// AlertRef is one alert of an incident, without the rule's description.
type AlertRef struct {
	Time             time.Time       `json:"time"`
	Rule             string          `json:"rule"`
	Severity         detect.Severity `json:"severity"`
	User             string          `json:"user"`
	ImpersonatedUser string          `json:"impersonatedUser,omitempty"`
	Verb             string          `json:"verb,omitempty"`
	Object           string          `json:"object,omitempty"`
	ResponseCode     int             `json:"responseCode,omitempty"`
	SourceIP         string          `json:"sourceIP,omitempty"`
	UserAgent        string          `json:"userAgent,omitempty"`
	Message          string          `json:"message"`
	Count            int             `json:"count"`
	AuditIDs         []string        `json:"auditIDs,omitempty"`
	Fingerprint      string          `json:"fingerprint"`
}

// severityWeight is what one alert of a rule adds to the score.
var severityWeight = map[detect.Severity]float64{
	detect.SeverityInfo: 1, detect.SeverityLow: 2, detect.SeverityMedium: 5,
	detect.SeverityHigh: 10, detect.SeverityCritical: 25,
}

// score is Σ over rules of weight(severity) × (1 + log2(alerts of the
// rule)), times 1 + ½ per kill-chain stage past the first: many alerts of
// one rule add little, reaching further along the chain multiplies.
func score(rules map[string]*ruleState, stages int) int {
	base := 0.0
	for _, r := range rules {
		base += severityWeight[r.hit.Severity] * (1 + math.Log2(float64(r.hit.Alerts)))
	}
	if stages > 1 {
		base *= 1 + 0.5*float64(stages-1)
	}
	return int(math.Round(base))
}

// kindOf classifies an identity by its name.
func kindOf(name string) string {
	switch {
	case strings.HasPrefix(name, "system:serviceaccount:"):
		return "serviceaccount"
	case strings.HasPrefix(name, "system:node:"):
		return "node"
	case name == "system:anonymous":
		return "anonymous"
	case strings.HasPrefix(name, unauthenticated):
		return "unauthenticated"
	case strings.HasPrefix(name, "system:"):
		return "control-plane"
	}
	return "user"
}

// summarize writes the incident's one-line summary.
func summarize(inc *Incident) string {
	var sb strings.Builder
	sb.WriteString(inc.Identities[0].Name)
	if n := len(inc.Identities) - 1; n > 0 {
		names := make([]string, 0, 3)
		for _, id := range inc.Identities[1:min(len(inc.Identities), 4)] {
			names = append(names, id.Name)
		}
		more := ""
		if n > 3 {
			more = ", …"
		}
		fmt.Fprintf(&sb, " and %d linked %s (%s%s)", n, plural(n, "identity", "identities"), strings.Join(names, ", "), more)
	}
	fmt.Fprintf(&sb, ": %d %s up to %s", inc.AlertCount, plural(inc.AlertCount, "alert", "alerts"), inc.Severity)
	if d := inc.LastTime.Sub(inc.FirstTime); d > 0 {
		fmt.Fprintf(&sb, " over %s", roundDuration(d))
	}
	if len(inc.Stages) > 0 {
		names := make([]string, len(inc.Stages))
		for i, s := range inc.Stages {
			names[i] = s.Stage.String()
		}
		fmt.Fprintf(&sb, "; reached %s", strings.Join(names, " → "))
	}
	if top := topRule(inc.Rules); top != nil {
		fmt.Fprintf(&sb, "; worst: %s", top.Title)
	}
	return sb.String()
}

// topRule is the most severe rule, the most frequent among equals.
func topRule(rules []RuleHit) *RuleHit {
	var top *RuleHit
	for i := range rules {
		r := &rules[i]
		if top == nil || r.Severity > top.Severity || (r.Severity == top.Severity && r.Alerts > top.Alerts) {
			top = r
		}
	}
	return top
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute)
	case d >= time.Minute:
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// sortedCounts returns the counts, most first.
func sortedCounts(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for v, n := range m {
		out = append(out, Count{v, n})
	}
	slices.SortFunc(out, func(a, b Count) int { return cmp.Or(cmp.Compare(b.N, a.N), strings.Compare(a.Value, b.Value)) })
	return out
}

// Sort orders incidents by score, then by first time and id.
func Sort(incs []Incident) {
	slices.SortFunc(incs, func(a, b Incident) int {
		return cmp.Or(cmp.Compare(b.Score, a.Score), a.FirstTime.Compare(b.FirstTime), strings.Compare(a.ID, b.ID))
	})
}
