package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// Alert is what a rule raises. Its JSON form is a contract documented in
// docs/alerts.md and pinned by a golden file; sinks receive it unchanged.
// Alerts never carry request or response bodies.
type Alert struct {
	Rule        string   `json:"rule"`
	Title       string   `json:"title"`
	Severity    Severity `json:"severity"`
	Tags        []string `json:"tags,omitempty"`
	Description string   `json:"description,omitempty"`
	// Message is the rule's rendered output template.
	Message string `json:"message"`
	// Time is the event time (requestReceivedTimestamp) of the event that
	// raised the alert; for windows, of the event that completed it.
	Time    time.Time `json:"time"`
	Cluster string    `json:"cluster,omitempty"`

	User             ingest.UserInfo   `json:"user"`
	ImpersonatedUser *ingest.UserInfo  `json:"impersonatedUser,omitempty"`
	SourceIPs        []string          `json:"sourceIPs,omitempty"`
	UserAgent        string            `json:"userAgent,omitempty"`
	Verb             string            `json:"verb,omitempty"`
	ObjectRef        *ingest.ObjectRef `json:"objectRef,omitempty"`
	RequestURI       string            `json:"requestURI,omitempty"`
	ResponseCode     int               `json:"responseCode,omitempty"`
	// ExecCommand is the command of an exec request, decoded from its
	// requestURI.
	ExecCommand string `json:"execCommand,omitempty"`
	// AuditIDs are the events behind the alert (a bounded sample for
	// windows, oldest first).
	AuditIDs []string `json:"auditIDs"`

	// GroupKey is the window key (the values of window.by joined by "|"),
	// or the auditID for single-event rules.
	GroupKey string `json:"groupKey"`
	// Count is the number of matching events in the window (1 for single
	// events); Distinct, for distinct windows, the values counted (bounded).
	Count     int       `json:"count"`
	Distinct  []string  `json:"distinct,omitempty"`
	FirstTime time.Time `json:"firstTime"`
	LastTime  time.Time `json:"lastTime"`
	// Fingerprint identifies the alert: a hash of rule, group key and
	// window start. A redelivered event yields the same fingerprint.
	Fingerprint string `json:"fingerprint"`
	// Suppressed counts the alerts of the same rule and suppression key
	// that were not emitted since the previous one; SuppressedSince is the
	// time of the first of them.
	Suppressed      int        `json:"suppressed,omitempty"`
	SuppressedSince *time.Time `json:"suppressedSince,omitempty"`
}

// Fingerprint returns the stable identity of an alert.
func Fingerprint(rule, groupKey string, windowStart time.Time) string {
	h := sha256.New()
	h.Write([]byte(rule))
	h.Write([]byte{0})
	h.Write([]byte(groupKey))
	h.Write([]byte{0})
	h.Write([]byte(windowStart.UTC().Format(time.RFC3339Nano)))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// windowResult is what a window adds to an alert.
type windowResult struct {
	key         string
	count       int
	first, last time.Time
	auditIDs    []string
	distinct    []string
}

// sensitiveBodies are resources whose bodies hold credentials: their request
// and response objects never reach an alert message.
var sensitiveBodies = map[string]bool{"secrets": true, "configmaps": true, "tokenreviews": true}

func hidesBodies(ref ingest.ObjectRef) bool {
	return sensitiveBodies[ref.Resource] || (ref.Resource == "serviceaccounts" && ref.Subresource == "token")
}

// newAlert builds the alert for rule r raised by ev (owned by the caller,
// which may reuse it after newAlert returns).
func newAlert(r *Rule, ev *ingest.Event, w windowResult) Alert {
	ev = ev.Clone()
	a := Alert{
		Rule: r.Spec.ID, Title: r.Spec.Title, Severity: r.Spec.Severity, Tags: r.Spec.Tags,
		Description: strings.TrimSpace(r.Spec.Description),
		Time:        ev.Time(), Cluster: ev.Cluster,
		User: ev.User, SourceIPs: ev.SourceIPs, UserAgent: ev.UserAgent, Verb: ev.Verb,
		RequestURI: ev.RequestURI, ResponseCode: ev.ResponseStatus.Code,
		ExecCommand: ExecCommand(ev.RequestURI),
		GroupKey:    w.key, Count: w.count, FirstTime: w.first, LastTime: w.last,
		AuditIDs: w.auditIDs, Distinct: w.distinct,
	}
	if ev.ImpersonatedUser.Username != "" || len(ev.ImpersonatedUser.Groups) > 0 {
		u := ev.ImpersonatedUser
		a.ImpersonatedUser = &u
	}
	if ev.ObjectRef != (ingest.ObjectRef{}) {
		ref := ev.ObjectRef
		a.ObjectRef = &ref
	}
	if w.count == 0 {
		a.GroupKey, a.Count, a.FirstTime, a.LastTime = ev.AuditID, 1, a.Time, a.Time
		a.AuditIDs = []string{ev.AuditID}
	}
	a.Fingerprint = Fingerprint(a.Rule, a.GroupKey, a.FirstTime)
	a.Message = render(r, ev, &a)
	return a
}

// templateFuncs are the functions output templates may call.
var templateFuncs = template.FuncMap{
	"join":        strings.Join,
	"execCommand": ExecCommand,
	"default": func(def string, v any) any {
		if v == nil || v == "" {
			return def
		}
		return v
	},
	// Calls inserted by parseOutput so that missing fields render empty.
	fieldFunc: lookupField,
	textFunc:  textOf,
}

// render executes the rule's output template over templateData.
func render(r *Rule, ev *ingest.Event, a *Alert) string {
	var sb strings.Builder
	if err := r.output.Execute(&sb, templateData(ev, a)); err != nil {
		return fmt.Sprintf("%s (output template failed: %v)", r.Spec.Title, err)
	}
	return sb.String()
}

// templateData is what output templates see: the event's fields (JSON
// names) and the window's: .count .key .first .last .distinct .auditIDs.
// parseOutput relies on every key but the bodies being always set.
func templateData(ev *ingest.Event, a *Alert) map[string]any {
	data := map[string]any{
		"level": ev.Level, "auditID": ev.AuditID, "stage": ev.Stage, "requestURI": ev.RequestURI,
		"verb": ev.Verb, "userAgent": ev.UserAgent, "sourceIPs": ev.SourceIPs, "cluster": ev.Cluster,
		"user":             map[string]any{"username": ev.User.Username, "uid": ev.User.UID, "groups": ev.User.Groups},
		"impersonatedUser": map[string]any{"username": ev.ImpersonatedUser.Username, "groups": ev.ImpersonatedUser.Groups},
		"objectRef": map[string]any{"resource": ev.ObjectRef.Resource, "namespace": ev.ObjectRef.Namespace,
			"name": ev.ObjectRef.Name, "subresource": ev.ObjectRef.Subresource, "apiGroup": ev.ObjectRef.APIGroup},
		"responseStatus":           map[string]any{"code": ev.ResponseStatus.Code, "reason": ev.ResponseStatus.Reason, "message": ev.ResponseStatus.Message},
		"annotations":              ev.Annotations,
		"requestReceivedTimestamp": ev.RequestReceivedTimestamp,
		"execCommand":              a.ExecCommand,
		"count":                    a.Count, "key": a.GroupKey, "first": a.FirstTime, "last": a.LastTime,
		"distinct": a.Distinct, "auditIDs": a.AuditIDs,
	}
	if !hidesBodies(ev.ObjectRef) {
		data["requestObject"], data["responseObject"] = ev.RequestObject, ev.ResponseObject
	}
	return data
}
