package ingest

import (
	"strings"
	"time"
)

// Event is one kube-apiserver audit event (audit.k8s.io/v1) with the fields
// detection reads. Field names in expressions, alerts and templates are the
// JSON names of the audit API (the expr tags).
//
// An Event returned by Decoder.Decode borrows the decoder's memory: its
// strings and lazily decoded objects are valid only until the next Decode
// call on the same Decoder. Call Clone to keep one longer.
type Event struct {
	Level      string   `expr:"level" json:"level,omitempty"`
	AuditID    string   `expr:"auditID" json:"auditID"`
	Stage      string   `expr:"stage" json:"stage"`
	RequestURI string   `expr:"requestURI" json:"requestURI,omitempty"`
	Verb       string   `expr:"verb" json:"verb,omitempty"`
	User       UserInfo `expr:"user" json:"user"`
	// ImpersonatedUser is the zero value unless the request was
	// impersonated; rules test `impersonatedUser.username != ""`.
	ImpersonatedUser UserInfo  `expr:"impersonatedUser" json:"impersonatedUser"`
	SourceIPs        []string  `expr:"sourceIPs" json:"sourceIPs,omitempty"`
	UserAgent        string    `expr:"userAgent" json:"userAgent,omitempty"`
	ObjectRef        ObjectRef `expr:"objectRef" json:"objectRef"`
	ResponseStatus   Status    `expr:"responseStatus" json:"responseStatus"`
	// Annotations is filled only when Decoder.Annotations is set (a rule reads
	// them); otherwise it is nil and reads yield "".
	Annotations map[string]string `expr:"annotations" json:"annotations,omitempty"`
	// RequestObject and ResponseObject are nil until LoadObjects fills them.
	RequestObject  any `expr:"requestObject" json:"requestObject,omitempty"`
	ResponseObject any `expr:"responseObject" json:"responseObject,omitempty"`

	RequestReceivedTimestamp time.Time `expr:"requestReceivedTimestamp" json:"requestReceivedTimestamp"`
	StageTimestamp           time.Time `expr:"stageTimestamp" json:"stageTimestamp"`

	// Cluster names the cluster the event came from (set by the source, not
	// by the apiserver).
	Cluster string `expr:"cluster" json:"cluster,omitempty"`

	lazy *lazyObjects
}

// UserInfo is the authenticated (or impersonated) user of a request.
type UserInfo struct {
	Username string              `expr:"username" json:"username,omitempty"`
	UID      string              `expr:"uid" json:"uid,omitempty"`
	Groups   []string            `expr:"groups" json:"groups,omitempty"`
	Extra    map[string][]string `expr:"extra" json:"extra,omitempty"`
}

// ObjectRef is the object a request targeted. It is the zero value for
// non-resource requests such as /healthz.
type ObjectRef struct {
	Resource        string `expr:"resource" json:"resource,omitempty"`
	Namespace       string `expr:"namespace" json:"namespace,omitempty"`
	Name            string `expr:"name" json:"name,omitempty"`
	UID             string `expr:"uid" json:"uid,omitempty"`
	APIGroup        string `expr:"apiGroup" json:"apiGroup,omitempty"`
	APIVersion      string `expr:"apiVersion" json:"apiVersion,omitempty"`
	ResourceVersion string `expr:"resourceVersion" json:"resourceVersion,omitempty"`
	Subresource     string `expr:"subresource" json:"subresource,omitempty"`
}

// Status is the response status of a request; Code is 0 when the event has
// none (stage RequestReceived).
type Status struct {
	Code    int    `expr:"code" json:"code,omitempty"`
	Status  string `expr:"status" json:"status,omitempty"`
	Reason  string `expr:"reason" json:"reason,omitempty"`
	Message string `expr:"message" json:"message,omitempty"`
}

// Time is the event time windows run on: requestReceivedTimestamp, or the
// stage timestamp when the former is missing.
func (e *Event) Time() time.Time {
	if e.RequestReceivedTimestamp.IsZero() {
		return e.StageTimestamp
	}
	return e.RequestReceivedTimestamp
}

// Clone returns a deep copy that owns its memory and outlives the decoder.
// It carries requestObject and responseObject only if they were loaded
// (LoadObjects): converting bodies is the costly part of an event.
func (e *Event) Clone() *Event {
	c := *e
	c.lazy = nil
	c.Level = clone(e.Level)
	c.AuditID = clone(e.AuditID)
	c.Stage = clone(e.Stage)
	c.RequestURI = clone(e.RequestURI)
	c.Verb = clone(e.Verb)
	c.User = e.User.clone()
	c.ImpersonatedUser = e.ImpersonatedUser.clone()
	c.SourceIPs = cloneSlice(e.SourceIPs)
	c.UserAgent = clone(e.UserAgent)
	c.ObjectRef = ObjectRef{
		Resource: clone(e.ObjectRef.Resource), Namespace: clone(e.ObjectRef.Namespace),
		Name: clone(e.ObjectRef.Name), UID: clone(e.ObjectRef.UID),
		APIGroup: clone(e.ObjectRef.APIGroup), APIVersion: clone(e.ObjectRef.APIVersion),
		ResourceVersion: clone(e.ObjectRef.ResourceVersion), Subresource: clone(e.ObjectRef.Subresource),
	}
	c.ResponseStatus = Status{Code: e.ResponseStatus.Code, Status: clone(e.ResponseStatus.Status),
		Reason: clone(e.ResponseStatus.Reason), Message: clone(e.ResponseStatus.Message)}
	if e.Annotations != nil {
		c.Annotations = make(map[string]string, len(e.Annotations))
		for k, v := range e.Annotations {
			c.Annotations[clone(k)] = clone(v)
		}
	}
	c.Cluster = clone(e.Cluster)
	return &c
}

func (u UserInfo) clone() UserInfo {
	c := UserInfo{Username: clone(u.Username), UID: clone(u.UID), Groups: cloneSlice(u.Groups)}
	if u.Extra != nil {
		c.Extra = make(map[string][]string, len(u.Extra))
		for k, v := range u.Extra {
			c.Extra[clone(k)] = cloneSlice(v)
		}
	}
	return c
}

func clone(s string) string { return strings.Clone(s) }

func cloneSlice(s []string) []string {
	if s == nil {
		return nil
	}
	c := make([]string, len(s))
	for i, v := range s {
		c[i] = clone(v)
	}
	return c
}
