package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"text/template"
	"time"
	"unsafe"

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

// windowResult is what a window adds to an alert; a sequence also the
// steps that completed it.
type windowResult struct {
	key         string
	count       int
	first, last time.Time
	auditIDs    []string
	distinct    []string
	steps       []stepResult
}

// stepResult is one step of a completed sequence, as output templates see
// it in .steps.
type stepResult struct {
	name, user, auditID string
	time                time.Time
}

// stepData is .steps: one map per step (name, user, auditID, time); empty
// but for sequences.
func (w *windowResult) stepData() []map[string]any {
	out := make([]map[string]any, 0, len(w.steps))
	for _, s := range w.steps {
		out = append(out, map[string]any{"name": s.name, "user": s.user, "auditID": s.auditID, "time": s.time})
	}
	return out
}

// firstUser is .firstUser: the user of a sequence's first step ("" for
// other kinds).
func (w *windowResult) firstUser() string {
	if len(w.steps) == 0 {
		return ""
	}
	return w.steps[0].user
}

// sensitiveBodies are resources whose bodies hold credentials: their request
// and response objects never reach an alert message.
var sensitiveBodies = map[string]bool{"secrets": true, "configmaps": true, "tokenreviews": true}

func hidesBodies(ref ingest.ObjectRef) bool {
	return sensitiveBodies[ref.Resource] || (ref.Resource == "serviceaccounts" && ref.Subresource == "token")
}

// newAlert builds the alert for rule r raised by ev (owned by the caller,
// which may reuse it after newAlert returns): the alert copies what it
// takes of the event, the event is not cloned.
func newAlert(r *Rule, ev *ingest.Event, w windowResult) Alert {
	a := Alert{
		Rule: r.Spec.ID, Title: r.Spec.Title, Severity: r.Spec.Severity, Tags: r.Spec.Tags,
		Description: r.description,
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
	a.Message = render(r, ev, &a, &w)
	a.own()
	return a
}

// own copies the strings an alert borrows from its event into one
// allocation, and its lists into another, so the alert outlives the event.
func (a *Alert) own() {
	strs := a.borrowed()
	lists := [][]string{a.User.Groups, a.SourceIPs, a.AuditIDs}
	if a.ImpersonatedUser != nil {
		lists = append(lists, a.ImpersonatedUser.Groups)
	}
	n, items := 0, 0
	for _, s := range strs {
		n += len(*s)
	}
	for _, l := range lists {
		items += len(l)
		for _, s := range l {
			n += len(s)
		}
	}
	buf := make([]byte, 0, n)
	keep := func(s string) string {
		if s == "" {
			return ""
		}
		start := len(buf)
		buf = append(buf, s...)
		return unsafe.String(&buf[start], len(s))
	}
	for _, s := range strs {
		*s = keep(*s)
	}
	all := make([]string, 0, items)
	copyList := func(l []string) []string {
		if l == nil {
			return nil
		}
		start := len(all)
		for _, s := range l {
			all = append(all, keep(s))
		}
		return all[start:len(all):len(all)]
	}
	a.User.Groups = copyList(a.User.Groups)
	a.SourceIPs = copyList(a.SourceIPs)
	a.AuditIDs = copyList(a.AuditIDs)
	a.User.Extra = ingest.CloneExtra(a.User.Extra)
	if u := a.ImpersonatedUser; u != nil {
		u.Groups = copyList(u.Groups)
		u.Extra = ingest.CloneExtra(u.Extra)
	}
}

// borrowed returns the string fields of an alert that may point into its
// event.
func (a *Alert) borrowed() []*string {
	out := []*string{&a.Cluster, &a.User.Username, &a.User.UID, &a.UserAgent, &a.Verb, &a.RequestURI,
		&a.ExecCommand, &a.GroupKey}
	if u := a.ImpersonatedUser; u != nil {
		out = append(out, &u.Username, &u.UID)
	}
	if r := a.ObjectRef; r != nil {
		out = append(out, &r.Resource, &r.Namespace, &r.Name, &r.UID, &r.APIGroup, &r.APIVersion,
			&r.ResourceVersion, &r.Subresource)
	}
	return out
}

// templateFuncs are the functions every output template may call;
// outputFuncs adds the expression helpers.
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

// render renders the rule's output template: compiled to Go when it could
// be, else with text/template over templateData.
func render(r *Rule, ev *ingest.Event, a *Alert, w *windowResult) string {
	if r.fastOutput != nil {
		return r.fastOutput.render(&tdata{ev: ev, a: a, w: w})
	}
	return renderTemplate(r, ev, a, w)
}

func renderTemplate(r *Rule, ev *ingest.Event, a *Alert, w *windowResult) string {
	var sb strings.Builder
	if err := r.output.Execute(&sb, templateData(ev, a, w)); err != nil {
		return fmt.Sprintf("%s (output template failed: %v)", r.Spec.Title, err)
	}
	return sb.String()
}

// templateData is what output templates see: the event's fields (JSON
// names) and the window's: .count .key .first .last .distinct .auditIDs,
// and for sequences .steps and .firstUser. parseOutput relies on every key
// but the bodies being always set.
func templateData(ev *ingest.Event, a *Alert, w *windowResult) map[string]any {
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
		"steps": w.stepData(), "firstUser": w.firstUser(),
	}
	if !hidesBodies(ev.ObjectRef) {
		data["requestObject"], data["responseObject"] = ev.RequestObject, ev.ResponseObject
	}
	return data
}
