package ingest

import (
	"bytes"

	"github.com/valyala/fastjson/fastfloat"

	"github.com/vigil-k8s/vigil/ingest/internal/jsonscan"
)

// scanEvent decodes an event in one pass over its bytes, without building
// a parse tree: the fields detection reads are taken where they stand, the
// other members and the bodies are only checked (the bodies are kept as
// bytes, parsed when LoadObjects asks). It gives up (ok false) on anything
// it does not read exactly as the tree decoder does, which then decides:
// a syntax error, nesting close to the parser's limit, an escaped member
// name, a number that is not a plain integer. On the events the apiserver
// writes it never gives up; decode_scan_test.go holds it to the tree
// decoder's answers.
func (d *Decoder) scanEvent(data []byte) (ev *Event, err error, ok bool) {
	d.esc = d.esc[:0]
	s := &scanner{b: data, d: d}
	i := jsonscan.SkipSpace(s.b, 0)
	if i >= len(s.b) || s.b[i] != '{' {
		return nil, nil, false
	}
	d.ev = Event{}
	d.lazy = lazyObjects{}
	d.groups, d.igrps, d.ips = d.groups[:0], d.igrps[:0], d.ips[:0]
	var f eventFields
	i, ok = s.members(i, func(k []byte, i int) (int, bool) { return s.eventMember(&f, k, i) })
	if !ok || jsonscan.End(s.b, i) != nil {
		return nil, nil, false
	}
	if d.lazy.reqRaw != nil || d.lazy.respRaw != nil {
		d.lazy.p = &d.bodies
	}
	ev, err = d.finish(&f)
	return ev, err, true
}

// eventFields are the members of an event the decoder checks but does not
// keep in the Event.
type eventFields struct {
	kind, apiVersion string
	rrt, st          []byte
	badField         string
}

// scanner reads the members of one event's JSON.
type scanner struct {
	b []byte
	d *Decoder
}

// members reads the object at b[i] and calls f for each member with its
// name and the index of its value; f returns the index past the value.
func (s *scanner) members(i int, f func(name []byte, at int) (int, bool)) (int, bool) {
	b := s.b
	i = jsonscan.SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, false
		}
		j := jsonscan.QuoteOrEscape(b, i+1)
		if j < 0 || b[j] != '"' {
			return i, false
		}
		name := b[i+1 : j]
		i = jsonscan.SkipSpace(b, j+1)
		if i >= len(b) || b[i] != ':' {
			return i, false
		}
		i = jsonscan.SkipSpace(b, i+1)
		var ok bool
		if i, ok = f(name, i); !ok {
			return i, false
		}
		i = jsonscan.SkipSpace(b, i)
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case '}':
			return i + 1, true
		case ',':
			i = jsonscan.SkipSpace(b, i+1)
		default:
			return i, false
		}
	}
}

// skip checks the value at b[i], at the given depth of its container, and
// returns the index past it.
func (s *scanner) skip(i, depth int) (int, bool) {
	end, d, err := jsonscan.Value(s.b, i)
	// Well below the parser's limit: the tree decoder judges the rest.
	if err != nil || depth+d >= jsonscan.MaxDepth {
		return end, false
	}
	return end, true
}

// str reads the string at b[i] as the tree decoder's str does: a value of
// another type is "" (and checked).
func (s *scanner) str(i, depth int) (string, int, bool) {
	if i < len(s.b) && s.b[i] == '"' {
		v, end, ok := s.stringAt(i)
		return b2s(v), end, ok
	}
	end, ok := s.skip(i, depth)
	return "", end, ok
}

// stringAt reads the string that starts at b[i] ('"'), unescaped as
// fastjson does (best effort: a bad escape stays as written). The bytes
// are the decoder's until its next Decode.
func (s *scanner) stringAt(i int) ([]byte, int, bool) {
	b := s.b
	start := i + 1
	end := jsonscan.QuoteOrEscape(b, start)
	if end < 0 {
		return nil, len(b), false
	}
	if b[end] == '"' {
		return b[start:end], end + 1, true
	}
	// An escape: the string is unescaped into the decoder's buffer, from
	// the escape on. When append moves the buffer, the strings already
	// handed out keep the old one.
	d := s.d
	from := len(d.esc)
	out, next, ok := jsonscan.AppendStringRest(append(d.esc, b[start:end]...), b, end)
	if !ok {
		return nil, len(b), false
	}
	d.esc = out
	return out[from:len(out):len(out)], next, true
}

// strs appends the strings of the array at b[i] as appendStrings does
// (an item of another type is "", a value that is no array adds nothing).
func (s *scanner) strs(dst []string, i, depth int) ([]string, int, bool) {
	b := s.b
	if i >= len(b) || b[i] != '[' {
		end, ok := s.skip(i, depth)
		return dst, end, ok
	}
	i = jsonscan.SkipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return dst, i + 1, true
	}
	for {
		v, end, ok := s.str(i, depth+1)
		if !ok {
			return dst, end, false
		}
		dst = append(dst, v)
		i = jsonscan.SkipSpace(b, end)
		if i >= len(b) {
			return dst, i, false
		}
		switch b[i] {
		case ']':
			return dst, i + 1, true
		case ',':
			i = jsonscan.SkipSpace(b, i+1)
		default:
			return dst, i, false
		}
	}
}

// object calls f for the members of the object at b[i] (a value of another
// type is checked and passed over, as GetObject's nil is).
func (s *scanner) object(i, depth int, f func(name []byte, at int) (int, bool)) (int, bool) {
	if i >= len(s.b) || s.b[i] != '{' {
		return s.skip(i, depth)
	}
	return s.members(i, f)
}

func (s *scanner) eventMember(f *eventFields, k []byte, i int) (int, bool) {
	d, e := s.d, &s.d.ev
	const depth = 1
	var end int
	ok := true
	switch string(k) {
	case "kind":
		f.kind, end, ok = s.str(i, depth)
	case "apiVersion":
		f.apiVersion, end, ok = s.str(i, depth)
	case "level":
		e.Level, end, ok = s.str(i, depth)
	case "auditID":
		e.AuditID, end, ok = s.str(i, depth)
	case "stage":
		e.Stage, end, ok = s.str(i, depth)
	case "requestURI":
		e.RequestURI, end, ok = s.str(i, depth)
	case "verb":
		e.Verb, end, ok = s.str(i, depth)
	case "userAgent":
		e.UserAgent, end, ok = s.str(i, depth)
	case "cluster":
		e.Cluster, end, ok = s.str(i, depth)
	case "user":
		end, ok = s.user(i, &e.User, &d.groups)
	case "impersonatedUser":
		end, ok = s.user(i, &e.ImpersonatedUser, &d.igrps)
	case "sourceIPs":
		d.ips, end, ok = s.strs(d.ips, i, depth)
	case "objectRef":
		end, ok = s.object(i, depth, func(k []byte, i int) (int, bool) { return s.objectRef(&e.ObjectRef, k, i) })
	case "responseStatus":
		end, ok = s.object(i, depth, func(k []byte, i int) (int, bool) { return s.status(&e.ResponseStatus, k, i) })
	case "requestObject", "responseObject":
		if end, ok = s.skip(i, depth); !ok {
			break
		}
		if bytes.HasPrefix(s.b[i:], []byte("null")) && end == i+4 {
			break
		}
		if k[2] == 'q' {
			d.lazy.reqRaw = s.b[i:end:end]
		} else {
			d.lazy.respRaw = s.b[i:end:end]
		}
	case "requestReceivedTimestamp", "stageTimestamp":
		var v []byte
		if i < len(s.b) && s.b[i] == '"' {
			v, end, ok = s.stringAt(i)
			if v == nil {
				// Empty, but a string: the tree decoder tells it from
				// a missing one.
				v = s.b[i+1 : i+1]
			}
		} else {
			end, ok = s.skip(i, depth)
		}
		if k[0] == 's' {
			f.st = v
		} else if f.rrt = v; v == nil && f.badField == "" {
			f.badField = "requestReceivedTimestamp"
		}
	case "annotations":
		end, ok = s.annotations(i)
	case "vigil":
		end, ok = s.object(i, depth, func(k []byte, i int) (int, bool) { return s.marks(&e.Vigil, k, i) })
	default:
		end, ok = s.skip(i, depth)
	}
	return end, ok
}

// user reads a UserInfo as decodeUser does.
func (s *scanner) user(i int, u *UserInfo, groups *[]string) (int, bool) {
	const depth = 2
	return s.object(i, depth-1, func(k []byte, i int) (end int, ok bool) {
		switch string(k) {
		case "username":
			u.Username, end, ok = s.str(i, depth)
		case "uid":
			u.UID, end, ok = s.str(i, depth)
		case "groups":
			*groups, end, ok = s.strs(*groups, i, depth)
		case "extra":
			if !s.d.Extra || i >= len(s.b) || s.b[i] != '{' {
				return s.skip(i, depth)
			}
			u.Extra = make(map[string][]string)
			end, ok = s.members(i, func(k []byte, i int) (end int, ok bool) {
				var vals []string
				vals, end, ok = s.strs(nil, i, depth+1)
				u.Extra[b2s(k)] = vals
				return end, ok
			})
		default:
			end, ok = s.skip(i, depth)
		}
		return end, ok
	})
}

func (s *scanner) objectRef(r *ObjectRef, k []byte, i int) (end int, ok bool) {
	const depth = 2
	var dst *string
	switch string(k) {
	case "resource":
		dst = &r.Resource
	case "namespace":
		dst = &r.Namespace
	case "name":
		dst = &r.Name
	case "uid":
		dst = &r.UID
	case "apiGroup":
		dst = &r.APIGroup
	case "apiVersion":
		dst = &r.APIVersion
	case "resourceVersion":
		dst = &r.ResourceVersion
	case "subresource":
		dst = &r.Subresource
	default:
		return s.skip(i, depth)
	}
	*dst, end, ok = s.str(i, depth)
	return end, ok
}

func (s *scanner) status(st *Status, k []byte, i int) (end int, ok bool) {
	const depth = 2
	switch string(k) {
	case "code":
		if end, ok = s.skip(i, depth); !ok {
			return end, false
		}
		st.Code = 0
		if c := s.b[i]; c == '-' || (c >= '0' && c <= '9') {
			n := fastfloat.ParseInt64BestEffort(b2s(s.b[i:end]))
			if nn := int(n); int64(nn) == n {
				st.Code = nn
			}
		} else if c != '"' && c != '{' && c != '[' && c != 't' && c != 'f' && !bytes.HasPrefix(s.b[i:], []byte("null")) {
			// NaN, Inf or a leading '+': numbers fastjson reads its own way.
			return end, false
		}
	case "status":
		st.Status, end, ok = s.str(i, depth)
	case "reason":
		st.Reason, end, ok = s.str(i, depth)
	case "message":
		st.Message, end, ok = s.str(i, depth)
	default:
		end, ok = s.skip(i, depth)
	}
	return end, ok
}

// annotations reads the annotations as the tree decoder does: the marks
// always, the map when the decoder is asked for it.
func (s *scanner) annotations(i int) (int, bool) {
	const depth = 2
	d, e := s.d, &s.d.ev
	if i >= len(s.b) || s.b[i] != '{' {
		return s.skip(i, depth-1)
	}
	if d.Annotations {
		if d.ann == nil {
			d.ann = make(map[string]string)
		}
		clear(d.ann)
	}
	end, ok := s.members(i, func(k []byte, i int) (end int, ok bool) {
		if !d.Annotations && !isMark(b2s(k)) {
			// Only the marks are read: the rest is checked, not
			// unescaped.
			return s.skip(i, depth)
		}
		var v string
		if v, end, ok = s.str(i, depth); !ok {
			return end, false
		}
		if d.Annotations {
			d.ann[b2s(k)] = v
		}
		readMark(&e.Vigil, b2s(k), v)
		return end, true
	})
	if d.Annotations {
		e.Annotations = d.ann
	}
	return end, ok
}

func (s *scanner) marks(m *Marks, k []byte, i int) (end int, ok bool) {
	const depth = 2
	switch string(k) {
	case "bodyUnparsed", "truncated":
		if end, ok = s.skip(i, depth); !ok {
			return end, false
		}
		if bytes.HasPrefix(s.b[i:], []byte("true")) && end == i+4 {
			if k[0] == 'b' {
				m.BodyUnparsed = true
			} else {
				m.Truncated = true
			}
		}
	case "source":
		var v string
		v, end, ok = s.str(i, depth)
		if m.Source == "" {
			m.Source = v
		}
	default:
		end, ok = s.skip(i, depth)
	}
	return end, ok
}
