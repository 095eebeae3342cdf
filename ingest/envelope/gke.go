package envelope

import (
	"fmt"
	"strings"

	"github.com/valyala/fastjson"
)

// GKE writes the API server's audit events to Cloud Audit Logs as LogEntry
// documents whose protoPayload is a google.cloud.audit.AuditLog:
// methodName io.k8s.core.v1.pods.exec.create, resourceName
// core/v1/namespaces/NS/pods/NAME/exec, authenticationInfo.principalEmail,
// requestMetadata.callerIp and callerSuppliedUserAgent, status (a gRPC
// code), authorizationInfo[].granted, request and response bodies; the
// entry's operation.id is the audit ID, operation.first and last tell the
// stage, labels hold the audit annotations, resource.labels the project,
// location and cluster.

const auditLogType = "type.googleapis.com/google.cloud.audit.AuditLog"

// httpFromGRPC maps a google.rpc.Code to the HTTP status the API server
// answered, as google.rpc.Code documents the mapping. The status classes
// survive; the exact code within a class does not (201 and 101 read 200).
var httpFromGRPC = map[int]int{
	0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
	9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}

// HTTPFromGRPC returns the HTTP status of a gRPC code (500 for an unknown
// code, as google.rpc.Code maps UNKNOWN).
func HTTPFromGRPC(code int) int {
	if h, ok := httpFromGRPC[code]; ok {
		return h
	}
	return 500
}

// GRPCFromHTTP returns the gRPC code of an HTTP status.
func GRPCFromHTTP(status int) int {
	switch {
	case status < 400:
		return 0
	case status == 400, status == 422:
		return 3
	case status == 401:
		return 16
	case status == 403:
		return 7
	case status == 404:
		return 5
	case status == 409:
		return 6
	case status == 429:
		return 8
	case status == 499:
		return 1
	case status == 501:
		return 12
	case status == 503:
		return 14
	case status == 504:
		return 4
	case status < 500:
		return 9
	case status == 500:
		return 13
	}
	return 2
}

// resourceRef is what a GKE resourceName says about the request's object.
type resourceRef struct {
	group, version, namespace, resource, name, subresource string
	// path is set for a non-resource request (/healthz).
	path string
}

// parseResourceName reads GROUP/VERSION[/namespaces/NS]/RESOURCE[/NAME[/SUB]]
// (GROUP "core" for the core group), or a path for non-resource requests.
func parseResourceName(s string) (resourceRef, bool) {
	if strings.HasPrefix(s, "/") {
		return resourceRef{path: s}, true
	}
	p := strings.Split(s, "/")
	if len(p) < 3 {
		return resourceRef{}, false
	}
	r := resourceRef{group: p[0], version: p[1]}
	if r.group == "core" {
		r.group = ""
	}
	rest := p[2:]
	// namespaces/NS/RESOURCE...: a namespaced resource. namespaces/NS
	// alone (or with status or finalize) is the namespace itself.
	if len(rest) >= 3 && rest[0] == "namespaces" && rest[2] != "status" && rest[2] != "finalize" {
		r.namespace = rest[1]
		rest = rest[2:]
	}
	r.resource = rest[0]
	if len(rest) > 1 {
		r.name = rest[1]
	}
	if len(rest) > 2 {
		r.subresource = strings.Join(rest[2:], "/")
	}
	return r, true
}

// ResourceName is the inverse of parseResourceName.
func ResourceName(group, version, namespace, resource, name, subresource string) string {
	if group == "" {
		group = "core"
	}
	parts := []string{group, version}
	if namespace != "" && resource != "namespaces" {
		parts = append(parts, "namespaces", namespace)
	}
	parts = append(parts, resource)
	if name != "" {
		parts = append(parts, name)
		if subresource != "" {
			parts = append(parts, subresource)
		}
	}
	return strings.Join(parts, "/")
}

func truthy(v *fastjson.Value) bool {
	if v == nil {
		return false
	}
	switch v.Type() {
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeString:
		return string(v.GetStringBytes()) == "true"
	}
	return false
}

// gkeEntry maps a LogEntry to the audit event it records.
func (d *Decoder) gkeEntry(v *fastjson.Value, origin string, cut *cutInfo) error {
	pp := v.Get("protoPayload")
	if t := string(pp.GetStringBytes("@type")); t != "" && t != auditLogType {
		d.skip(origin, "protoPayload is a "+t)
		return nil
	}
	if svc := string(pp.GetStringBytes("serviceName")); svc != "" && svc != "k8s.io" {
		d.skip(origin, "service "+svc+" is not the Kubernetes API")
		return nil
	}
	insertID := string(v.GetStringBytes("insertId"))
	id := string(v.GetStringBytes("operation", "id"))
	if id == "" {
		id = insertID
	}
	if id == "" {
		reason := "entry has no operation.id or insertId"
		if cut != nil {
			reason = fmt.Sprintf("entry cut before its operation.id (at %q)", cut.lost)
		}
		return d.bad(origin, fmt.Errorf("%w: GKE %s", ErrNotEnvelope, reason), v.MarshalTo(nil))
	}
	method := string(pp.GetStringBytes("methodName"))
	if !strings.HasPrefix(method, "io.k8s.") {
		d.skip(origin, "method "+method+" is not a Kubernetes API method")
		return nil
	}
	a := &d.arena
	a.Reset()
	ev := a.NewObject()
	ev.Set("kind", a.NewString("Event"))
	ev.Set("apiVersion", a.NewString("audit.k8s.io/v1"))
	ev.Set("auditID", a.NewString(id))
	stage := "ResponseComplete"
	if op := v.Get("operation"); op != nil && truthy(op.Get("first")) && !truthy(op.Get("last")) {
		stage = "ResponseStarted"
	}
	ev.Set("stage", a.NewString(stage))
	ev.Set("verb", a.NewString(method[strings.LastIndexByte(method, '.')+1:]))
	rn := string(pp.GetStringBytes("resourceName"))
	if ref, ok := parseResourceName(rn); ok && ref.path != "" {
		ev.Set("requestURI", a.NewString(ref.path))
	} else if ok {
		or := a.NewObject()
		for _, kv := range [][2]string{{"resource", ref.resource}, {"namespace", ref.namespace}, {"name", ref.name},
			{"apiGroup", ref.group}, {"apiVersion", ref.version}, {"subresource", ref.subresource}} {
			if kv[1] != "" {
				or.Set(kv[0], a.NewString(kv[1]))
			}
		}
		ev.Set("objectRef", or)
	}
	user := a.NewObject()
	if email := pp.GetStringBytes("authenticationInfo", "principalEmail"); len(email) > 0 {
		user.Set("username", a.NewString(string(email)))
	}
	ev.Set("user", user)
	if ip := pp.GetStringBytes("requestMetadata", "callerIp"); len(ip) > 0 {
		ips := a.NewArray()
		ips.SetArrayItem(0, a.NewString(string(ip)))
		ev.Set("sourceIPs", ips)
	}
	if ua := pp.GetStringBytes("requestMetadata", "callerSuppliedUserAgent"); len(ua) > 0 {
		ev.Set("userAgent", a.NewString(string(ua)))
	}
	if st := pp.Get("status"); st != nil && st.Type() == fastjson.TypeObject {
		rs := a.NewObject()
		rs.Set("code", a.NewNumberInt(HTTPFromGRPC(st.GetInt("code"))))
		if msg := st.GetStringBytes("message"); len(msg) > 0 {
			rs.Set("message", a.NewString(string(msg)))
		}
		ev.Set("responseStatus", rs)
	}
	for _, kv := range [][2]string{{"request", "requestObject"}, {"response", "responseObject"}} {
		if body := pp.Get(kv[0]); body != nil && body.Type() == fastjson.TypeObject {
			body.Del("@type")
			ev.Set(kv[1], body)
		}
	}
	if ts := v.GetStringBytes("timestamp"); len(ts) > 0 {
		ev.Set("requestReceivedTimestamp", a.NewString(string(ts)))
	}
	ann := a.NewObject()
	if labels := v.GetObject("labels"); labels != nil {
		labels.Visit(func(k []byte, lv *fastjson.Value) {
			if lv.Type() == fastjson.TypeString {
				ann.Set(string(k), lv)
			}
		})
	}
	if ann.Get("authorization.k8s.io/decision") == nil {
		if ai := pp.GetArray("authorizationInfo"); len(ai) > 0 {
			decision := "allow"
			for _, x := range ai {
				if !truthy(x.Get("granted")) {
					decision = "forbid"
				}
			}
			ann.Set("authorization.k8s.io/decision", a.NewString(decision))
		}
	}
	m := meta{provider: GKE, origin: origin, record: insertID,
		cluster: string(v.GetStringBytes("resource", "labels", "cluster_name"))}
	d.annotate(ann, m, cut != nil)
	ev.Set("annotations", ann)
	it := Item{Data: d.emit(func(b []byte) []byte { return ev.MarshalTo(b) }), Cluster: m.clusterOr(d.Cluster), Origin: origin,
		AuditID: id, Stage: stage, Provider: GKE, Truncated: cut != nil}
	if cut != nil {
		it.Lost = cut.lost
	}
	return d.Item(it)
}
