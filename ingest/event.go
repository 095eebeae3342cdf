package ingest

import (
	"slices"
	"strings"
	"time"
	"unsafe"
)

// Event is one kube-apiserver audit event (audit.k8s.io/v1) with the fields
// detection reads. Field names in expressions, alerts and templates are the
// JSON names of the audit API (the expr tags).
//
// An Event returned by Decoder.Decode borrows the decoder's memory and the
// JSON it was decoded from: its strings and lazily decoded objects are
// valid only until the next Decode call on the same Decoder, and while
// that JSON is not changed. Call Clone to keep one longer.
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

	// Vigil says how completely the event could be read.
	Vigil Marks `expr:"vigil" json:"vigil"`

	lazy *lazyObjects
}

// Annotations by which the producer of an event's JSON tells the decoder
// what it left out or where the event came from: readers of cloud log
// envelopes, and the webhook for an event over its size limit.
const (
	// AnnotationTruncated "true": the bodies (or more) were removed.
	AnnotationTruncated = "vigil.dev/truncated"
	// AnnotationSource names the source the event came from.
	AnnotationSource = "vigil.dev/source"
	// AnnotationAPIServerTruncated "true" is set by the apiserver's own
	// truncating audit backend when it removed the bodies.
	AnnotationAPIServerTruncated = "audit.k8s.io/truncated"
)

// Marks are what the decoder noted about an event beyond the audit API.
// Only ever set by reading, never cleared: an event that claims less than
// its annotations say is still marked.
type Marks struct {
	// BodyUnparsed: the event's JSON could not be decoded whole (a request
	// or response body nested deeper than the parser goes, or JSON broken
	// after the metadata). The fields that could be read are set; the
	// unreadable parts, bodies first, are missing.
	BodyUnparsed bool `expr:"bodyUnparsed" json:"bodyUnparsed,omitempty"`
	// Truncated: the producer removed the bodies because the event was too
	// large (annotation vigil.dev/truncated or audit.k8s.io/truncated "true").
	Truncated bool `expr:"truncated" json:"truncated,omitempty"`
	// Source is the annotation vigil.dev/source.
	Source string `expr:"source" json:"source,omitempty"`
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
// (LoadObjects): converting bodies is the costly part of an event. The
// strings of a clone share one allocation.
func (e *Event) Clone() *Event {
	c := *e
	c.lazy = nil
	c.User.Groups = slices.Clone(e.User.Groups)
	c.ImpersonatedUser.Groups = slices.Clone(e.ImpersonatedUser.Groups)
	c.SourceIPs = slices.Clone(e.SourceIPs)
	n := 0
	c.visitStrings(func(s *string) { n += len(*s) })
	buf := make([]byte, 0, n)
	c.visitStrings(func(s *string) {
		if *s == "" {
			return
		}
		start := len(buf)
		buf = append(buf, *s...)
		*s = unsafe.String(&buf[start], len(*s))
	})
	c.User.Extra = CloneExtra(e.User.Extra)
	c.ImpersonatedUser.Extra = CloneExtra(e.ImpersonatedUser.Extra)
	if e.Annotations != nil {
		c.Annotations = make(map[string]string, len(e.Annotations))
		for k, v := range e.Annotations {
			c.Annotations[strings.Clone(k)] = strings.Clone(v)
		}
	}
	return &c
}

// visitStrings calls f with every string field of the event outside maps.
func (e *Event) visitStrings(f func(*string)) {
	for _, s := range []*string{&e.Level, &e.AuditID, &e.Stage, &e.RequestURI, &e.Verb, &e.UserAgent, &e.Cluster,
		&e.User.Username, &e.User.UID, &e.ImpersonatedUser.Username, &e.ImpersonatedUser.UID,
		&e.ObjectRef.Resource, &e.ObjectRef.Namespace, &e.ObjectRef.Name, &e.ObjectRef.UID,
		&e.ObjectRef.APIGroup, &e.ObjectRef.APIVersion, &e.ObjectRef.ResourceVersion, &e.ObjectRef.Subresource,
		&e.ResponseStatus.Status, &e.ResponseStatus.Reason, &e.ResponseStatus.Message, &e.Vigil.Source} {
		f(s)
	}
	for i := range e.User.Groups {
		f(&e.User.Groups[i])
	}
	for i := range e.ImpersonatedUser.Groups {
		f(&e.ImpersonatedUser.Groups[i])
	}
	for i := range e.SourceIPs {
		f(&e.SourceIPs[i])
	}
}

// CloneExtra deep-copies a user's extra fields, so that they no longer
// share memory with a decoded event.
func CloneExtra(m map[string][]string) map[string][]string {
	if m == nil {
		return nil
	}
	c := make(map[string][]string, len(m))
	for k, v := range m {
		vs := make([]string, len(v))
		for i, s := range v {
			vs[i] = strings.Clone(s)
		}
		c[strings.Clone(k)] = vs
	}
	return c
}
