package incident

import (
	"fmt"
	"strings"

	"github.com/vigil-k8s/vigil/detect"
)

// Rule is the rule id of the alerts that announce incidents. Route them
// with include: {rules: [incident]}.
const Rule = "incident"

const changeDescription = "Alerts of one credential, and of the credentials it granted, impersonated " +
	"or minted tokens for, grouped into an incident that reached a new severity or kill-chain stage. " +
	"The message is the incident's summary; the request fields are those of the alert that changed it."

// Alert returns the alert that tells sinks about the change: rule
// "incident", the incident's severity, its tactics as tags, the summary
// as message, and the request fields of the alert that caused it. The
// fingerprint derives from the incident id and the level reached, so the
// same change raised twice is stored once.
func (c Change) Alert() detect.Alert {
	inc := c.Incident
	tags := []string{"vigil.incident", "incident." + c.Kind.String()}
	for _, t := range inc.Tactics {
		tags = append(tags, "attack."+t.Tactic)
	}
	tags = append(tags, inc.Techniques...)
	stages := make([]string, len(inc.Stages))
	for i, s := range inc.Stages {
		stages[i] = s.Stage.String()
	}
	cause := c.Cause
	level := strings.Join([]string{inc.ID, c.Kind.String(), inc.Severity.String(), strings.Join(stages, ",")}, "|")
	return detect.Alert{
		Rule: Rule, Title: "Incident " + c.Kind.String(), Severity: inc.Severity, Tags: tags,
		Description: changeDescription,
		Message:     fmt.Sprintf("incident %s %s: %s", inc.ID, c.Kind, inc.Summary),
		Time:        cause.Time, Cluster: cause.Cluster,
		User: cause.User, ImpersonatedUser: cause.ImpersonatedUser, SourceIPs: cause.SourceIPs,
		UserAgent: cause.UserAgent, Verb: cause.Verb, ObjectRef: cause.ObjectRef, RequestURI: cause.RequestURI,
		ResponseCode: cause.ResponseCode, ExecCommand: cause.ExecCommand, AuditIDs: cause.AuditIDs,
		GroupKey: inc.ID, Count: inc.AlertCount, FirstTime: inc.FirstTime, LastTime: inc.LastTime,
		Fingerprint: detect.Fingerprint(Rule, level, inc.FirstTime),
	}
}
