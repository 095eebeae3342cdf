package envelope

import (
	"fmt"
	"slices"
	"strings"

	"github.com/valyala/fastjson"
)

// GKEEntry returns the Cloud Audit Logs LogEntry GKE writes for an audit
// event; ok is false for an event GKE never writes (stage RequestReceived).
// A request or response body that is not a JSON object (a JSON patch)
// cannot be an AuditLog Struct and is left out.
func (e *Encoder) GKEEntry(event []byte) (entry []byte, ok bool, err error) {
	v, err := e.p.ParseBytes(event)
	if err != nil {
		return nil, false, fmt.Errorf("encode: %w", err)
	}
	id := string(v.GetStringBytes("auditID"))
	stage := string(v.GetStringBytes("stage"))
	if stage == "RequestReceived" {
		e.Skipped++
		return nil, false, nil
	}
	first := !e.seen[id]
	e.seen[id] = true
	last := stage != "ResponseStarted"

	a := &e.a
	a.Reset()
	verb := string(v.GetStringBytes("verb"))
	or := v.Get("objectRef")
	var method, resourceName string
	if or == nil || len(or.GetStringBytes("resource")) == 0 {
		uri := string(v.GetStringBytes("requestURI"))
		uri, _, _ = strings.Cut(uri, "?")
		method, resourceName = "io.k8s."+verb, uri
	} else {
		s := func(k string) string { return string(or.GetStringBytes(k)) }
		resourceName = ResourceName(s("apiGroup"), s("apiVersion"), s("namespace"), s("resource"), s("name"), s("subresource"))
		parts := []string{"io", "k8s", methodGroup(s("apiGroup")), s("apiVersion"), s("resource")}
		if sub := s("subresource"); sub != "" {
			parts = append(parts, sub)
		}
		method = strings.Join(append(parts, verb), ".")
	}

	pp := a.NewObject()
	pp.Set("@type", a.NewString(auditLogType))
	ai := a.NewObject()
	if u := v.GetStringBytes("user", "username"); len(u) > 0 {
		ai.Set("principalEmail", a.NewString(string(u)))
	}
	pp.Set("authenticationInfo", ai)
	authz := a.NewObject()
	authz.Set("permission", a.NewString(method))
	authz.Set("resource", a.NewString(resourceName))
	if string(v.GetStringBytes("annotations", "authorization.k8s.io/decision")) == "allow" {
		authz.Set("granted", a.NewTrue())
	} else {
		authz.Set("granted", a.NewFalse())
	}
	authzList := a.NewArray()
	authzList.SetArrayItem(0, authz)
	pp.Set("authorizationInfo", authzList)
	pp.Set("methodName", a.NewString(method))
	rm := a.NewObject()
	if ip := v.GetStringBytes("sourceIPs", "0"); len(ip) > 0 {
		rm.Set("callerIp", a.NewString(string(ip)))
	}
	if ua := v.GetStringBytes("userAgent"); len(ua) > 0 {
		rm.Set("callerSuppliedUserAgent", a.NewString(string(ua)))
	}
	pp.Set("requestMetadata", rm)
	pp.Set("resourceName", a.NewString(resourceName))
	pp.Set("serviceName", a.NewString("k8s.io"))
	st := a.NewObject()
	if rs := v.Get("responseStatus"); rs != nil {
		if code := GRPCFromHTTP(rs.GetInt("code")); code != 0 {
			st.Set("code", a.NewNumberInt(code))
			if m := rs.GetStringBytes("message"); len(m) > 0 {
				st.Set("message", a.NewString(string(m)))
			}
		}
	}
	pp.Set("status", st)
	for _, kv := range [][2]string{{"requestObject", "request"}, {"responseObject", "response"}} {
		if body := v.Get(kv[0]); body != nil && body.Type() == fastjson.TypeObject {
			body.Set("@type", a.NewString(bodyType(body)))
			pp.Set(kv[1], body)
		}
	}

	le := a.NewObject()
	le.Set("protoPayload", pp)
	le.Set("insertId", a.NewString(insertID(id, stage, first)))
	res := a.NewObject()
	res.Set("type", a.NewString("k8s_cluster"))
	rl := a.NewObject()
	rl.Set("project_id", a.NewString(e.opts.Project))
	rl.Set("location", a.NewString(e.opts.Location))
	rl.Set("cluster_name", a.NewString(e.opts.Cluster))
	res.Set("labels", rl)
	le.Set("resource", res)
	if ts := v.Get("requestReceivedTimestamp"); ts != nil {
		le.Set("timestamp", ts)
	}
	le.Set("severity", a.NewString("NOTICE"))
	labels := a.NewObject()
	if ann := v.GetObject("annotations"); ann != nil {
		ann.Visit(func(k []byte, av *fastjson.Value) { labels.Set(string(k), av) })
	}
	le.Set("labels", labels)
	log := "activity"
	if slices.Contains([]string{"get", "list", "watch"}, verb) {
		log = "data_access"
	}
	le.Set("logName", a.NewString("projects/"+e.opts.Project+"/logs/cloudaudit.googleapis.com%2F"+log))
	op := a.NewObject()
	op.Set("id", a.NewString(id))
	op.Set("producer", a.NewString("k8s.io"))
	if first {
		op.Set("first", a.NewTrue())
	}
	if last {
		op.Set("last", a.NewTrue())
	}
	le.Set("operation", op)
	if ts := v.Get("stageTimestamp"); ts != nil {
		le.Set("receiveTimestamp", ts)
	}
	return le.MarshalTo(nil), true, nil
}

func insertID(id, stage string, first bool) string {
	if first {
		return id
	}
	return id + "-" + strings.ToLower(stage)
}

// methodGroup writes an API group as GKE's method names do:
// rbac.authorization.k8s.io reads authorization.rbac, the core group core.
func methodGroup(group string) string {
	if group == "" {
		return "core"
	}
	parts := strings.Split(strings.TrimSuffix(group, ".k8s.io"), ".")
	slices.Reverse(parts)
	return strings.Join(parts, ".")
}

// bodyType is the @type GKE gives a body: core.k8s.io/v1.Pod,
// rbac.authorization.k8s.io/v1.ClusterRoleBinding.
func bodyType(body *fastjson.Value) string {
	av := string(body.GetStringBytes("apiVersion"))
	group, version, ok := strings.Cut(av, "/")
	if !ok {
		group, version = "core", av
	}
	if !strings.Contains(group, ".") {
		group += ".k8s.io"
	}
	return group + "/" + version + "." + string(body.GetStringBytes("kind"))
}
