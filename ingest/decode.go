package ingest

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/vigil-k8s/vigil/ingest/internal/jsonscan"
)

// Supported audit API versions. Lines without apiVersion are accepted when
// their shape fits an Event.
const (
	APIVersionV1      = "audit.k8s.io/v1"
	APIVersionV1beta1 = "audit.k8s.io/v1beta1"
)

// ErrNotEvent wraps every reason a document is not an audit event.
var ErrNotEvent = errors.New("not an audit event")

// Decoder turns raw event JSON into an Event, reusing its parser and
// buffers between calls. A Decoder is not safe for concurrent use; give each
// goroutine its own.
type Decoder struct {
	// Annotations makes Decode fill Event.Annotations, and Extra
	// UserInfo.Extra: a map per event each, so only when a rule reads them.
	Annotations, Extra bool

	p fastjson.Parser
	// esc holds the unescaped strings of the event being decoded, bodies
	// parses its bodies when they are loaded.
	esc    []byte
	bodies fastjson.Parser
	ev     Event
	groups []string
	igrps  []string
	ips    []string
	ann    map[string]string
	lazy   lazyObjects
	// part holds the readable members of an event being salvaged;
	// salvaged says the last Decode did so.
	part     []byte
	salvaged bool
}

// lazyObjects holds the unparsed request and response bodies of the event
// being decoded; they are converted to Go values on first use.
type lazyObjects struct {
	req, resp *fastjson.Value
	// reqRaw and respRaw are bodies kept as bytes, parsed by p.
	reqRaw, respRaw []byte
	p               *fastjson.Parser
	loaded          bool
}

// LoadObjects converts requestObject and responseObject to Go values
// (map[string]any, []any, string, float64, bool) if they are not yet.
func (e *Event) LoadObjects() {
	if e.lazy == nil || e.lazy.loaded {
		return
	}
	l := e.lazy
	l.loaded = true
	if l.req == nil && l.reqRaw != nil {
		l.req, _ = l.p.ParseBytes(l.reqRaw)
	}
	if l.req != nil {
		e.RequestObject = objectToAny(l.req)
	}
	if l.resp == nil && l.respRaw != nil {
		// The request body was converted: the parser is free again.
		l.resp, _ = l.p.ParseBytes(l.respRaw)
	}
	if l.resp != nil {
		e.ResponseObject = objectToAny(l.resp)
	}
}

// HasRequestObject reports whether the event carries a requestObject,
// without decoding it.
func (e *Event) HasRequestObject() bool {
	return e.RequestObject != nil || (e.lazy != nil && (e.lazy.req != nil || e.lazy.reqRaw != nil))
}

// HasResponseObject reports whether the event carries a responseObject.
func (e *Event) HasResponseObject() bool {
	return e.ResponseObject != nil || (e.lazy != nil && (e.lazy.resp != nil || e.lazy.respRaw != nil))
}

// Decode parses one audit event. The returned Event borrows data and the
// decoder's memory: it is valid until the next call to Decode, as long as
// data is not changed. Errors wrap ErrNotEvent and say what is wrong. JSON the
// parser refuses is salvaged when its metadata can be read: the event is
// returned without the unreadable parts and marked Vigil.BodyUnparsed.
func (d *Decoder) Decode(data []byte) (*Event, error) {
	d.salvaged = false
	if ev, err, ok := d.scanEvent(data); ok {
		return ev, err
	}
	v, err := d.p.ParseBytes(data)
	if err != nil {
		ev, err := d.salvage(data, err)
		d.salvaged = err == nil
		return ev, err
	}
	return d.decodeValue(v)
}

// Salvaged reports whether the event the last Decode returned was read
// only in part: its JSON is not whole (NotWhole says why).
func (d *Decoder) Salvaged() bool { return d.salvaged }

// NotWhole says why data is not JSON that the decoder reads whole, or nil.
func NotWhole(data []byte) error {
	end, depth, err := jsonscan.Value(data, 0)
	if err == nil {
		err = jsonscan.End(data, end)
	}
	if err != nil {
		return fmt.Errorf("malformed JSON: %w; read up to the break", err)
	}
	if depth > jsonscan.MaxDepth {
		return fmt.Errorf("JSON nested %d levels deep, over the %d the decoder reads; read without the parts too deep", depth, jsonscan.MaxDepth)
	}
	return nil
}

func (d *Decoder) decodeValue(v *fastjson.Value) (*Event, error) {
	o, err := v.Object()
	if err != nil {
		return nil, fmt.Errorf("%w: want a JSON object, got %s", ErrNotEvent, v.Type())
	}
	d.ev = Event{}
	d.lazy = lazyObjects{}
	d.groups, d.igrps, d.ips = d.groups[:0], d.igrps[:0], d.ips[:0]
	e := &d.ev
	var f eventFields
	o.Visit(func(k []byte, v *fastjson.Value) {
		if f.badField != "" {
			return
		}
		switch string(k) {
		case "kind":
			f.kind = str(v)
		case "apiVersion":
			f.apiVersion = str(v)
		case "level":
			e.Level = str(v)
		case "auditID":
			e.AuditID = str(v)
		case "stage":
			e.Stage = str(v)
		case "requestURI":
			e.RequestURI = str(v)
		case "verb":
			e.Verb = str(v)
		case "user":
			d.groups = decodeUser(v, &e.User, d.groups, d.Extra)
		case "impersonatedUser":
			d.igrps = decodeUser(v, &e.ImpersonatedUser, d.igrps, d.Extra)
		case "sourceIPs":
			d.ips = appendStrings(d.ips, v)
		case "userAgent":
			e.UserAgent = str(v)
		case "cluster":
			// Not an audit API field: vigil's own serialized events
			// (window snapshots) carry it.
			e.Cluster = str(v)
		case "objectRef":
			decodeObjectRef(v, &e.ObjectRef)
		case "responseStatus":
			decodeStatus(v, &e.ResponseStatus)
		case "requestObject":
			if v.Type() != fastjson.TypeNull {
				d.lazy.req = v
			}
		case "responseObject":
			if v.Type() != fastjson.TypeNull {
				d.lazy.resp = v
			}
		case "requestReceivedTimestamp":
			f.rrt = v.GetStringBytes()
			if f.rrt == nil {
				f.badField = "requestReceivedTimestamp"
			}
		case "stageTimestamp":
			f.st = v.GetStringBytes()
		case "annotations":
			if v.Type() != fastjson.TypeObject {
				return
			}
			if d.Annotations {
				if d.ann == nil {
					d.ann = make(map[string]string)
				}
				clear(d.ann)
			}
			v.GetObject().Visit(func(k []byte, v *fastjson.Value) {
				if d.Annotations {
					d.ann[b2s(k)] = str(v)
				}
				readMark(&e.Vigil, b2s(k), str(v))
			})
			if d.Annotations {
				e.Annotations = d.ann
			}
		case "vigil":
			// vigil's own serialized events (window snapshots) carry
			// the marks; they only ever add to what the decoder finds.
			decodeMarks(v, &e.Vigil)
		}
	})
	return d.finish(&f)
}

// finish checks the event decoded into d.ev and completes it.
func (d *Decoder) finish(f *eventFields) (*Event, error) {
	e := &d.ev
	if f.badField != "" {
		return nil, fmt.Errorf("%w: %s is not a string", ErrNotEvent, f.badField)
	}
	if f.kind != "" && f.kind != "Event" {
		return nil, fmt.Errorf("%w: kind %q, want Event", ErrNotEvent, f.kind)
	}
	if f.apiVersion != "" && f.apiVersion != APIVersionV1 && f.apiVersion != APIVersionV1beta1 {
		return nil, fmt.Errorf("%w: apiVersion %q, want %s or %s", ErrNotEvent, f.apiVersion, APIVersionV1, APIVersionV1beta1)
	}
	if e.AuditID == "" {
		return nil, fmt.Errorf("%w: missing auditID", ErrNotEvent)
	}
	if e.Stage == "" {
		return nil, fmt.Errorf("%w: missing stage", ErrNotEvent)
	}
	if e.Verb == "" && e.RequestURI == "" {
		return nil, fmt.Errorf("%w: missing verb and requestURI", ErrNotEvent)
	}
	if f.rrt != nil {
		t, err := ParseTime(f.rrt)
		if err != nil {
			return nil, fmt.Errorf("%w: requestReceivedTimestamp: %v", ErrNotEvent, err)
		}
		e.RequestReceivedTimestamp = t
	}
	if f.st != nil {
		t, err := ParseTime(f.st)
		if err != nil {
			return nil, fmt.Errorf("%w: stageTimestamp: %v", ErrNotEvent, err)
		}
		e.StageTimestamp = t
	}
	if e.RequestReceivedTimestamp.IsZero() && e.StageTimestamp.IsZero() {
		return nil, fmt.Errorf("%w: missing requestReceivedTimestamp", ErrNotEvent)
	}
	e.User.Groups = nilIfEmpty(d.groups)
	e.SourceIPs = nilIfEmpty(d.ips)
	e.ImpersonatedUser.Groups = nilIfEmpty(d.igrps)
	if d.lazy.req != nil || d.lazy.resp != nil || d.lazy.reqRaw != nil || d.lazy.respRaw != nil {
		e.lazy = &d.lazy
	}
	return e, nil
}

// isMark reports whether readMark reads an annotation.
func isMark(key string) bool {
	return key == AnnotationTruncated || key == AnnotationAPIServerTruncated || key == AnnotationSource
}

// readMark notes the annotations that mark an event.
func readMark(m *Marks, key, value string) {
	switch key {
	case AnnotationTruncated, AnnotationAPIServerTruncated:
		m.Truncated = m.Truncated || value == "true"
	case AnnotationSource:
		m.Source = value
	}
}

func decodeMarks(v *fastjson.Value, m *Marks) {
	o := v.GetObject()
	if o == nil {
		return
	}
	o.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case "bodyUnparsed":
			m.BodyUnparsed = m.BodyUnparsed || v.Type() == fastjson.TypeTrue
		case "truncated":
			m.Truncated = m.Truncated || v.Type() == fastjson.TypeTrue
		case "source":
			if m.Source == "" {
				m.Source = str(v)
			}
		}
	})
}

func decodeUser(v *fastjson.Value, u *UserInfo, groups []string, extra bool) []string {
	o := v.GetObject()
	if o == nil {
		return groups
	}
	o.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case "username":
			u.Username = str(v)
		case "uid":
			u.UID = str(v)
		case "groups":
			groups = appendStrings(groups, v)
		case "extra":
			if eo := v.GetObject(); extra && eo != nil {
				u.Extra = make(map[string][]string, eo.Len())
				eo.Visit(func(k []byte, v *fastjson.Value) {
					u.Extra[b2s(k)] = appendStrings(nil, v)
				})
			}
		}
	})
	return groups
}

func decodeObjectRef(v *fastjson.Value, r *ObjectRef) {
	o := v.GetObject()
	if o == nil {
		return
	}
	o.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case "resource":
			r.Resource = str(v)
		case "namespace":
			r.Namespace = str(v)
		case "name":
			r.Name = str(v)
		case "uid":
			r.UID = str(v)
		case "apiGroup":
			r.APIGroup = str(v)
		case "apiVersion":
			r.APIVersion = str(v)
		case "resourceVersion":
			r.ResourceVersion = str(v)
		case "subresource":
			r.Subresource = str(v)
		}
	})
}

func decodeStatus(v *fastjson.Value, s *Status) {
	o := v.GetObject()
	if o == nil {
		return
	}
	o.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case "code":
			s.Code = v.GetInt()
		case "status":
			s.Status = str(v)
		case "reason":
			s.Reason = str(v)
		case "message":
			s.Message = str(v)
		}
	})
}

func appendStrings(dst []string, v *fastjson.Value) []string {
	for _, item := range v.GetArray() {
		dst = append(dst, str(item))
	}
	return dst
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// str returns a string value without copying: it points into the parser's
// buffer, which is why an Event is valid only until the next Decode.
func str(v *fastjson.Value) string { return b2s(v.GetStringBytes()) }

func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// objectToAny converts a request or response body, leaving out
// metadata.managedFields: it is bookkeeping of field owners, often half of
// an object, and no detection reads it.
func objectToAny(v *fastjson.Value) any {
	if md := v.Get("metadata"); md != nil && md.Type() == fastjson.TypeObject {
		md.GetObject().Del("managedFields")
	}
	return toAny(v)
}

// toAny converts a parsed JSON value to plain Go values that expressions and
// templates understand. Strings are copied: objects may outlive the parser
// through Clone.
func toAny(v *fastjson.Value) any {
	switch v.Type() {
	case fastjson.TypeObject:
		o := v.GetObject()
		m := make(map[string]any, o.Len())
		o.Visit(func(k []byte, v *fastjson.Value) { m[string(k)] = toAny(v) })
		return m
	case fastjson.TypeArray:
		a := v.GetArray()
		s := make([]any, len(a))
		for i, item := range a {
			s[i] = toAny(item)
		}
		return s
	case fastjson.TypeString:
		return string(v.GetStringBytes())
	case fastjson.TypeNumber:
		return v.GetFloat64()
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeFalse:
		return false
	}
	return nil
}

// ParseTime parses an RFC 3339 timestamp as the apiserver writes them
// (microseconds, UTC), with a fast path for that exact shape.
func ParseTime(b []byte) (time.Time, error) {
	if t, ok := parseUTC(b); ok {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, fmt.Errorf("want RFC 3339 time, got %q", b)
	}
	return t, nil
}

// parseUTC handles YYYY-MM-DDTHH:MM:SS[.fraction]Z without allocating.
func parseUTC(b []byte) (time.Time, bool) {
	n := len(b)
	if n < 20 || b[n-1] != 'Z' || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	num := func(s []byte) (int, bool) {
		v := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, ok1 := num(b[0:4])
	mon, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hh, ok4 := num(b[11:13])
	mm, ok5 := num(b[14:16])
	ss, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || mon < 1 || mon > 12 || day < 1 || day > daysIn(mon, year) || hh > 23 || mm > 59 || ss > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if n > 20 {
		if b[19] != '.' || n-21 > 9 || n-21 < 1 {
			return time.Time{}, false
		}
		frac, ok := num(b[20 : n-1])
		if !ok {
			return time.Time{}, false
		}
		for i := n - 21; i < 9; i++ {
			frac *= 10
		}
		nsec = frac
	}
	return time.Date(year, time.Month(mon), day, hh, mm, ss, nsec, time.UTC), true
}

// daysIn returns the number of days of a month, so the fast path rejects
// what time.Parse rejects instead of normalizing it.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
