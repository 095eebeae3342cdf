package envelope

import (
	"bytes"
	"strconv"
	"unsafe"

	"github.com/valyala/fastjson/fastfloat"

	"github.com/vigil-k8s/vigil/ingest/internal/jsonscan"
)

// fastGKE reads a GKE LogEntry in one pass and writes the audit event
// gkeEntry would, with the request and response bodies copied as written
// instead of parsed and encoded again. Every member is checked as the
// parser checks it. Like fastCloudWatch, it returns false, having passed
// nothing on, for an entry it does not read exactly as gkeEntry does: a
// member name with an escape, a member the envelopes tried before GKE look
// for, a field gkeEntry reads that is repeated, a label vigil's own
// annotations would replace, or an entry without an id.
func (d *Decoder) fastGKE(data []byte, origin string) (bool, error) {
	if !bytes.Contains(data, []byte(`"protoPayload"`)) {
		return false, nil
	}
	e := &d.gke
	*e = gkeFields{labels: e.labels[:0]}
	if !e.read(data) {
		return false, nil
	}
	return d.writeGKE(data, e, origin)
}

// gkeFields are the parts of a LogEntry gkeEntry reads, as spans of the
// entry (a string's span holds its quotes; no span: absent or no string).
type gkeFields struct {
	typ, service, method, resourceName, email, ip, ua, message, insertID, opID, ts, cluster span
	first, last, hasStatus, hasDecision                                                     bool
	code                                                                                    int
	request, response                                                                       body
	labels                                                                                  []label
	// authz sums up authorizationInfo: 0 none, 1 all granted, 2 not.
	authz int
}

type span struct{ from, to int }

func (s span) ok() bool { return s.to > s.from }

// filled reports whether a string's span holds more than its quotes.
func (s span) filled() bool { return s.to-s.from > 2 }

// in returns the span of b as a string sharing b's bytes.
func (s span) in(b []byte) string { return unsafe.String(&b[s.from], s.to-s.from) }

// body is a request or response object, and its @type member with the
// comma that goes with it.
type body struct {
	span
	cut span
}

// label is a string label: its name and value.
type label struct{ name, value span }

// gkeSkipped are members that send an entry to another envelope's decoder
// before gkeEntry.
var gkeSkipped = []string{"messageType", "awslogs", "logEvents", "events", "records", "category"}

func (e *gkeFields) read(b []byte) bool {
	payload := false
	end, err := members(b, 0, 1, []string{"protoPayload", "insertId", "operation", "timestamp", "labels", "resource"},
		func(bit, start int) (int, error) {
			switch bit {
			case 1:
				payload = true
				return e.payload(b, start)
			case 2:
				return stringField(b, start, 1, &e.insertID)
			case 4:
				return e.operation(b, start)
			case 8:
				return stringField(b, start, 1, &e.ts)
			case 16:
				return e.labelsAt(b, start)
			}
			return e.resource(b, start)
		})
	return err == nil && payload && jsonscan.End(b, end) == nil
}

// checked checks the value at b[i], in an object or array at the given
// depth: one the parser would refuse as too deep stops the one-pass read.
func checked(b []byte, i, depth int) (int, error) {
	end, d, err := jsonscan.Value(b, i)
	if err == nil && depth+d > jsonscan.MaxDepth {
		return i, errNotFast
	}
	return end, err
}

// stringField sets *s to the value at b[i] when it is a string, and checks
// the value.
func stringField(b []byte, i, depth int, s *span) (int, error) {
	end, err := checked(b, i, depth)
	if i = jsonscan.SkipSpace(b, i); err == nil && b[i] == '"' {
		*s = span{i, end}
	}
	return end, err
}

// members reads the object at b[i], at the given depth, with f for the
// members named in names (bit 1<<k for names[k]) and checks the others. A
// value that is not an object is checked and passed over, as the parser
// finds no member in it. A repeated or escaped name stops the read, and
// at depth 1 a member of another envelope does.
func members(b []byte, i, depth int, names []string, f func(bit, start int) (int, error)) (int, error) {
	i = jsonscan.SkipSpace(b, i)
	if i >= len(b) || b[i] != '{' {
		return checked(b, i, depth-1)
	}
	seen := 0
	return jsonscan.Members(b, i, func(name []byte, start int) (int, error) {
		bit := memberBit(name, names...)
		if bit < 0 || seen&bit != 0 {
			return start, errNotFast
		}
		seen |= bit
		if bit > 0 {
			return f(bit, start)
		}
		if depth == 1 {
			for _, k := range gkeSkipped {
				if string(name) == k {
					return start, errNotFast
				}
			}
		}
		return checked(b, start, depth)
	})
}

func (e *gkeFields) payload(b []byte, i int) (int, error) {
	return members(b, i, 2, []string{"@type", "serviceName", "methodName", "resourceName", "authenticationInfo",
		"requestMetadata", "status", "request", "response", "authorizationInfo"}, func(bit, start int) (int, error) {
		switch bit {
		case 1:
			return stringField(b, start, 2, &e.typ)
		case 2:
			return stringField(b, start, 2, &e.service)
		case 4:
			return stringField(b, start, 2, &e.method)
		case 8:
			return stringField(b, start, 2, &e.resourceName)
		case 16:
			return members(b, start, 3, []string{"principalEmail"}, func(_, start int) (int, error) {
				return stringField(b, start, 3, &e.email)
			})
		case 32:
			return members(b, start, 3, []string{"callerIp", "callerSuppliedUserAgent"}, func(bit, start int) (int, error) {
				if bit == 1 {
					return stringField(b, start, 3, &e.ip)
				}
				return stringField(b, start, 3, &e.ua)
			})
		case 64:
			return e.status(b, start)
		case 128:
			return e.body(b, start, &e.request)
		case 256:
			return e.body(b, start, &e.response)
		}
		return e.authorization(b, start)
	})
}

func (e *gkeFields) status(b []byte, i int) (int, error) {
	i = jsonscan.SkipSpace(b, i)
	e.hasStatus = i < len(b) && b[i] == '{'
	return members(b, i, 3, []string{"code", "message"}, func(bit, start int) (int, error) {
		if bit == 2 {
			return stringField(b, start, 3, &e.message)
		}
		end, err := checked(b, start, 3)
		if v := b[jsonscan.SkipSpace(b, start):end]; err == nil && jsonscan.Type(v) == "number" {
			// As the parser's GetInt reads it.
			if n := fastfloat.ParseInt64BestEffort(string(v)); int64(int(n)) == n {
				e.code = int(n)
			}
		}
		return end, err
	})
}

// body checks a request or response object and finds its @type member.
func (e *gkeFields) body(b []byte, i int, out *body) (int, error) {
	i = jsonscan.SkipSpace(b, i)
	if i >= len(b) || b[i] != '{' {
		return checked(b, i, 2)
	}
	prev, n := i+1, 0
	end, err := jsonscan.Members(b, i, func(name []byte, start int) (int, error) {
		// The parser path may write the body's member names again: one
		// it would escape must be read by it.
		if hasSpecial(name) {
			return start, errNotFast
		}
		end, err := checked(b, start, 3)
		if err != nil {
			return end, err
		}
		if string(name) == "@type" {
			if out.cut.ok() {
				// The parser path deletes only the first.
				return start, errNotFast
			}
			// From the comma after the previous member to the end of
			// this one; for the first member, see below.
			out.cut = span{prev, end}
			if n == 0 {
				out.cut.from = i + 1
			}
		}
		prev, n = end, n+1
		return end, nil
	})
	if err == nil {
		out.span = span{i, end}
		if out.cut.ok() && out.cut.from == i+1 {
			// The first member takes the comma after it, if any.
			if c := jsonscan.SkipSpace(b, out.cut.to); b[c] == ',' {
				out.cut.to = jsonscan.SkipSpace(b, c+1)
			}
		}
	}
	return end, err
}

func (e *gkeFields) authorization(b []byte, i int) (int, error) {
	i = jsonscan.SkipSpace(b, i)
	if i >= len(b) || b[i] != '[' {
		return checked(b, i, 2)
	}
	var err error
	end, aerr := jsonscan.Elements(b, i, func(elem []byte, depth int) {
		if depth+3 > jsonscan.MaxDepth {
			err = errNotFast
		}
		granted := false
		if _, gerr := members(elem, 0, 4, []string{"granted"}, func(_, start int) (int, error) {
			end, err := checked(elem, start, 4)
			granted = err == nil && truthyRaw(elem[jsonscan.SkipSpace(elem, start):end])
			return end, err
		}); gerr != nil {
			err = gerr
		}
		e.authz = max(e.authz, 1)
		if !granted {
			e.authz = 2
		}
	})
	if aerr != nil {
		return end, aerr
	}
	return end, err
}

// truthyRaw is truthy for a value as written.
func truthyRaw(v []byte) bool {
	if string(v) == "true" {
		return true
	}
	if len(v) == 0 || v[0] != '"' {
		return false
	}
	s, _, ok := jsonscan.AppendString(nil, v, 0)
	return ok && string(s) == "true"
}

func (e *gkeFields) operation(b []byte, i int) (int, error) {
	return members(b, i, 2, []string{"id", "first", "last"}, func(bit, start int) (int, error) {
		if bit == 1 {
			return stringField(b, start, 2, &e.opID)
		}
		end, err := checked(b, start, 2)
		t := err == nil && truthyRaw(b[jsonscan.SkipSpace(b, start):end])
		if bit == 2 {
			e.first = t
		} else {
			e.last = t
		}
		return end, err
	})
}

func (e *gkeFields) resource(b []byte, i int) (int, error) {
	return members(b, i, 2, []string{"labels"}, func(_, start int) (int, error) {
		return members(b, start, 3, []string{"cluster_name"}, func(_, start int) (int, error) {
			return stringField(b, start, 3, &e.cluster)
		})
	})
}

func (e *gkeFields) labelsAt(b []byte, i int) (int, error) {
	i = jsonscan.SkipSpace(b, i)
	if i >= len(b) || b[i] != '{' {
		return checked(b, i, 1)
	}
	return jsonscan.Members(b, i, func(name []byte, start int) (int, error) {
		if bytes.IndexByte(name, '\\') >= 0 {
			return start, errNotFast
		}
		var v span
		end, err := stringField(b, start, 2, &v)
		if err != nil || !v.ok() {
			return end, err
		}
		switch string(name) {
		case AnnotationSource, AnnotationRecord, AnnotationTruncated:
			// vigil's annotation would replace the label in place.
			return start, errNotFast
		case "authorization.k8s.io/decision":
			e.hasDecision = true
		}
		// Members passes the name between its quotes: b[from+1:to-1].
		from := cap(b) - cap(name) - 1
		n := span{from, from + len(name) + 2}
		for _, l := range e.labels {
			if string(b[l.name.from:l.name.to]) == string(b[n.from:n.to]) {
				// A repeated label replaces the first in place.
				return start, errNotFast
			}
		}
		e.labels = append(e.labels, label{n, v})
		return end, nil
	})
}

// str returns a string span's value, unescaped as the parser unescapes it
// (into d.gkeBuf when it holds an escape); nil for no span.
func (d *Decoder) str(b []byte, s span) []byte {
	if !s.ok() {
		return nil
	}
	raw := b[s.from+1 : s.to-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw
	}
	from := len(d.gkeBuf)
	d.gkeBuf, _, _ = jsonscan.AppendString(d.gkeBuf, b, s.from)
	return d.gkeBuf[from:len(d.gkeBuf):len(d.gkeBuf)]
}

// writeGKE hands on the event gkeEntry would write for the entry e read.
// It returns false, having passed nothing on, for an entry without an id,
// which gkeEntry reports with the entry as the parser writes it.
func (d *Decoder) writeGKE(b []byte, e *gkeFields, origin string) (bool, error) {
	d.gkeBuf = d.gkeBuf[:0]
	if t := d.str(b, e.typ); len(t) > 0 && string(t) != auditLogType {
		d.skip(origin, "protoPayload is a "+string(t))
		return true, nil
	}
	if svc := d.str(b, e.service); len(svc) > 0 && string(svc) != "k8s.io" {
		d.skip(origin, "service "+string(svc)+" is not the Kubernetes API")
		return true, nil
	}
	insertID := d.str(b, e.insertID)
	id := d.str(b, e.opID)
	if len(id) == 0 {
		id = insertID
	}
	if len(id) == 0 {
		return false, nil
	}
	method := d.str(b, e.method)
	if !bytes.HasPrefix(method, []byte("io.k8s.")) {
		d.skip(origin, "method "+string(method)+" is not a Kubernetes API method")
		return true, nil
	}
	stage := "ResponseComplete"
	if e.first && !e.last {
		stage = "ResponseStarted"
	}
	var idAt int
	data := d.emit(func(out []byte) []byte {
		start := len(out)
		out = append(out, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":`...)
		idAt = len(out) - start
		out = appendParserString(out, id)
		out = append(out, `,"stage":"`...)
		out = append(out, stage...)
		out = append(out, `","verb":`...)
		out = appendParserString(out, method[bytes.LastIndexByte(method, '.')+1:])
		if ref, ok := parseResourceName(string(d.str(b, e.resourceName))); ok && ref.path != "" {
			out = append(out, `,"requestURI":`...)
			out = appendParserString(out, []byte(ref.path))
		} else if ok {
			out = append(out, `,"objectRef":{`...)
			n := 0
			for _, kv := range [...][2]string{{"resource", ref.resource}, {"namespace", ref.namespace}, {"name", ref.name},
				{"apiGroup", ref.group}, {"apiVersion", ref.version}, {"subresource", ref.subresource}} {
				if kv[1] != "" {
					if n > 0 {
						out = append(out, ',')
					}
					out = append(append(append(append(out, '"'), kv[0]...), '"'), ':')
					out = appendParserString(out, []byte(kv[1]))
					n++
				}
			}
			out = append(out, '}')
		}
		out = append(out, `,"user":{`...)
		if e.email.filled() {
			out = append(out, `"username":`...)
			out = d.appendStr(out, b, e.email)
		}
		out = append(out, '}')
		if e.ip.filled() {
			out = append(out, `,"sourceIPs":[`...)
			out = append(d.appendStr(out, b, e.ip), ']')
		}
		if e.ua.filled() {
			out = append(out, `,"userAgent":`...)
			out = d.appendStr(out, b, e.ua)
		}
		if e.hasStatus {
			out = append(out, `,"responseStatus":{"code":`...)
			out = strconv.AppendInt(out, int64(HTTPFromGRPC(e.code)), 10)
			if e.message.filled() {
				out = append(out, `,"message":`...)
				out = d.appendStr(out, b, e.message)
			}
			out = append(out, '}')
		}
		for _, o := range [...]struct {
			name string
			body *body
		}{{"requestObject", &e.request}, {"responseObject", &e.response}} {
			if o.body.ok() {
				out = append(append(append(append(out, `,"`...), o.name...), '"'), ':')
				out = o.body.appendTo(out, b)
			}
		}
		if e.ts.filled() {
			out = append(out, `,"requestReceivedTimestamp":`...)
			out = d.appendStr(out, b, e.ts)
		}
		out = append(out, `,"annotations":{`...)
		for _, l := range e.labels {
			out = d.appendStr(out, b, l.name)
			out = append(out, ':')
			out = append(d.appendStr(out, b, l.value), ',')
		}
		if !e.hasDecision && e.authz != 0 {
			out = append(out, `"authorization.k8s.io/decision":"`...)
			out = append(out, [...]string{1: "allow", 2: "forbid"}[e.authz]...)
			out = append(out, `",`...)
		}
		out = append(out, `"`+AnnotationSource+`":"`+string(GKE)+`"`...)
		if len(insertID) > 0 {
			out = append(out, `,"`+AnnotationRecord+`":`...)
			out = appendParserString(out, insertID)
		}
		return append(out, "}}"...)
	})
	auditID := string(id)
	if !hasSpecial(id) {
		// The id is written as it is: the item's id shares its bytes.
		auditID = unsafe.String(&data[idAt+1], len(id))
	}
	cluster := d.gkeCluster.get(d.str(b, e.cluster), func(s string) string { return s })
	if cluster == "" {
		cluster = d.Cluster
	}
	return true, d.Item(Item{Data: data, Cluster: cluster, Origin: origin, AuditID: auditID, Stage: stage, Provider: GKE})
}

// appendStr appends the string at s as appendParserString appends its
// value: as written when that is what the parser writes (printable ASCII
// whose only escapes are \" and \\), else unescaped and escaped again.
func (d *Decoder) appendStr(out, b []byte, s span) []byte {
	raw := b[s.from+1 : s.to-1]
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' && i+1 < len(raw) && (raw[i+1] == '"' || raw[i+1] == '\\') {
			i++
			continue
		}
		if c < 0x20 || c > 0x7e || c == '\\' {
			return appendParserString(out, d.str(b, s))
		}
	}
	return append(out, b[s.from:s.to]...)
}

// appendTo appends the body without its @type member.
func (bd *body) appendTo(out, b []byte) []byte {
	if !bd.cut.ok() {
		return append(out, b[bd.from:bd.to]...)
	}
	out = append(out, b[bd.from:bd.cut.from]...)
	return append(out, b[bd.cut.to:bd.to]...)
}

// appendParserString appends s as fastjson writes a string it has
// unescaped (strconv.AppendQuote for one with a quote, backslash or
// control byte), so that both paths write the same event.
func appendParserString(out, s []byte) []byte {
	if !hasSpecial(s) {
		out = append(out, '"')
		out = append(out, s...)
		return append(out, '"')
	}
	// AppendQuote escapes a quote and a backslash alone in printable
	// ASCII, the common case (the reason label quotes the role binding).
	start := len(out)
	out = append(out, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c >= 0x20 && c < 0x7f:
			out = append(out, c)
		default:
			return strconv.AppendQuote(out[:start], string(s))
		}
	}
	return append(out, '"')
}
