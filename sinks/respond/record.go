package respond

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

// Modes of a record.
const (
	ModeDryRun  = "dry-run"
	ModeEnforce = "enforce"
)

// Statuses of a record.
const (
	// StatusPlanned: dry-run, the action would run as recorded.
	StatusPlanned = "planned"
	// StatusStarted is written before the first change of an enforced
	// action, with Before; an action found started resumes from it.
	StatusStarted = "started"
	// StatusDone: the change was made.
	StatusDone = "done"
	// StatusUnchanged: the target was already in the wanted state.
	StatusUnchanged = "unchanged"
	// StatusRefused: the target is protected (Detail says why).
	StatusRefused = "refused"
	// StatusRateLimited: a rate limit or the per-minute cap was reached.
	StatusRateLimited = "rate-limited"
	// StatusSkipped: the alert names no target for the action, or the
	// target does not exist (any more).
	StatusSkipped = "skipped"
	// StatusFailed: the cluster refused the change for good (a missing
	// permission, an invalid object); Detail has its answer.
	StatusFailed = "failed"
	// StatusUndone marks the record of an undo (Undoes names the action).
	StatusUndone = "undone"
)

// EventRulePrefix starts the rule id of the sink events of records
// ("response:revoke-binding"). Rule ids cannot contain ':', so these never
// collide with a detection rule, and the responder ignores them.
const EventRulePrefix = "response:"

// Record is one action, planned or done: a line of the journal and a sink
// event.
type Record struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Action string    `json:"action"`
	Mode   string    `json:"mode"`
	Status string    `json:"status"`
	Target Target    `json:"target"`
	// Reason is why the action was taken: the alert that raised it.
	Reason string `json:"reason"`
	// Detail is what was (or would be) changed, or why not.
	Detail string `json:"detail,omitempty"`
	// Response is the responses rule and the action's index in it.
	Response ResponseRef `json:"response"`
	Alert    AlertRef    `json:"alert"`
	// Before is the state the action changed, as Undo restores it.
	Before json.RawMessage `json:"before,omitempty"`
	// Undoes is the ID of the action an undo record reverts.
	Undoes string `json:"undoes,omitempty"`
}

// Target is the object an action works on. Kind is a Kubernetes kind, or
// User / Group for identities; annotate also records the resource.
type Target struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	APIGroup   string `json:"apiGroup,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
	Resource   string `json:"resource,omitempty"`
}

func (t Target) String() string {
	if t.Name == "" {
		return "(none)"
	}
	if t.Namespace != "" {
		return t.Kind + " " + t.Namespace + "/" + t.Name
	}
	return t.Kind + " " + t.Name
}

// ResponseRef names the responses rule and action behind a record.
type ResponseRef struct {
	Rule   string `json:"rule"`
	Action int    `json:"action"`
}

// AlertRef identifies the alert behind a record.
type AlertRef struct {
	Rule        string          `json:"rule"`
	Fingerprint string          `json:"fingerprint"`
	Severity    detect.Severity `json:"severity,omitempty"`
	Time        time.Time       `json:"time"`
	User        string          `json:"user,omitempty"`
}

// actionID is the stable ID of one action for one alert: redelivered
// alerts get the same IDs, which the journal recognises.
func actionID(fingerprint, rule string, action int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", fingerprint, rule, action))
	return hex.EncodeToString(h[:10])
}

// undoID is the ID of the record of an undo.
func undoID(id string) string { return id + ".undo" }

// final reports whether a status ends an action (everything but started).
func final(status string) bool { return status != StatusStarted }

// EventAlert is the sink event of a record: an alert of rule
// "response:<action>" whose objectRef is the target. Enforced actions that
// were done, failed or refused keep the severity of their alert; the rest
// (dry-run, unchanged, skipped) are info.
func EventAlert(rec Record, src *detect.Alert) detect.Alert {
	sev := detect.SeverityInfo
	if rec.Mode == ModeEnforce && (rec.Status == StatusDone || rec.Status == StatusFailed ||
		rec.Status == StatusRefused || rec.Status == StatusUndone) {
		sev = cmp.Or(rec.Alert.Severity, detect.SeverityHigh)
	}
	rule := EventRulePrefix + rec.Action
	al := detect.Alert{
		Rule:        rule,
		Title:       fmt.Sprintf("Response %s %s (%s)", rec.Action, rec.Status, rec.Mode),
		Severity:    sev,
		Tags:        []string{"vigil.response", "mode." + rec.Mode, "status." + rec.Status},
		Description: "vigil's response to an alert; the journal record " + rec.ID + " holds the state before.",
		Message:     eventMessage(rec),
		Time:        rec.Time,
		GroupKey:    rec.ID,
		Count:       1,
		FirstTime:   rec.Time,
		LastTime:    rec.Time,
		AuditIDs:    []string{},
	}
	if src != nil {
		al.Cluster, al.User, al.AuditIDs = src.Cluster, src.User, src.AuditIDs
	}
	if rec.Target.Name != "" {
		al.ObjectRef = &ingest.ObjectRef{Resource: rec.Target.resource(), Namespace: rec.Target.Namespace,
			Name: rec.Target.Name, APIGroup: rec.Target.APIGroup, APIVersion: rec.Target.APIVersion}
	}
	// The status is part of the identity: a record and its undo are two
	// events, a redelivered one is the same.
	al.Fingerprint = detect.Fingerprint(rule, rec.ID+"|"+rec.Status, rec.Alert.Time)
	return al
}

func eventMessage(rec Record) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s: %s", rec.Action, rec.Target, rec.Status)
	if rec.Mode == ModeDryRun {
		sb.WriteString(" (dry-run)")
	}
	if rec.Detail != "" {
		sb.WriteString(": " + rec.Detail)
	}
	if rec.Undoes != "" {
		sb.WriteString(" (undoes " + rec.Undoes + ")")
	} else if rec.Alert.Rule != "" {
		fmt.Fprintf(&sb, " (alert %s, response %s)", rec.Alert.Rule, rec.Response.Rule)
	}
	return sb.String()
}

// resource is the target's API resource (plural), for objectRef.
func (t Target) resource() string {
	if t.Resource != "" {
		return t.Resource
	}
	if r, ok := kindResources[t.Kind]; ok {
		return r
	}
	return strings.ToLower(t.Kind)
}

// kindResources maps the kinds actions work on to their resources.
var kindResources = map[string]string{
	"Pod":                            "pods",
	"Deployment":                     "deployments",
	"StatefulSet":                    "statefulsets",
	"ReplicaSet":                     "replicasets",
	"DaemonSet":                      "daemonsets",
	"Job":                            "jobs",
	"CronJob":                        "cronjobs",
	"Service":                        "services",
	"ConfigMap":                      "configmaps",
	"Secret":                         "secrets",
	"ServiceAccount":                 "serviceaccounts",
	"Node":                           "nodes",
	"Namespace":                      "namespaces",
	"NetworkPolicy":                  "networkpolicies",
	"Event":                          "events",
	"Role":                           "roles",
	"ClusterRole":                    "clusterroles",
	"RoleBinding":                    "rolebindings",
	"ClusterRoleBinding":             "clusterrolebindings",
	"CertificateSigningRequest":      "certificatesigningrequests",
	"MutatingWebhookConfiguration":   "mutatingwebhookconfigurations",
	"ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
	"User":                           "users",
	"Group":                          "groups",
}
