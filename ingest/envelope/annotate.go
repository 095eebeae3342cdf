package envelope

import (
	"bytes"
	"strings"

	"github.com/valyala/fastjson"
)

// fastMessage annotates an event laid out as the API server writes it
// (auditID and stage first, annotations last) without parsing it: the
// head gives the ids, and the annotations object must close the event,
// which an event cut short cannot do. Anything else takes the parser.
func (d *Decoder) fastMessage(msg []byte, m meta) (Item, bool) {
	if m.provider == AKS && hasSkippedObject(msg) {
		return Item{}, false
	}
	head := msg[:min(len(msg), 512)]
	id, ok := headString(head, `"auditID":"`)
	if !ok {
		return Item{}, false
	}
	stage, ok := headString(head, `"stage":"`)
	if !ok {
		return Item{}, false
	}
	end := len(msg)
	for end > 0 && isSpace(msg[end-1]) {
		end--
	}
	k := bytes.LastIndex(msg[:end], []byte(`,"annotations":{`))
	if end == 0 || msg[end-1] != '}' || k < 0 {
		return Item{}, false
	}
	open := k + len(`,"annotations":`)
	closeAt, complete := skipValue(msg[:end], open)
	if !complete || closeAt != end-1 {
		return Item{}, false
	}
	empty := skipSpace(msg, open+1) == closeAt-1
	out := d.emit(func(out []byte) []byte {
		out = append(out, msg[:closeAt-1]...)
		if !empty {
			out = append(out, ',')
		}
		out = appendVigilAnnotations(out, m)
		return append(out, msg[closeAt-1:end]...)
	})
	return Item{Data: out, Origin: m.origin, AuditID: id, Stage: stage, Provider: m.provider}, true
}

// hasSkippedObject reports whether msg holds AKS's stand-in for a body too
// big to log, as a JSON string. The search starts at its 'z', rare in
// audit events: '"' is everywhere in JSON, which would make IndexByte stop
// at every string.
func hasSkippedObject(msg []byte) bool {
	const quoted = `"` + skippedObject + `"`
	at := strings.IndexByte(quoted, 'z')
	for off := 0; ; {
		i := bytes.Index(msg[off:], []byte(quoted[at:]))
		if i < 0 {
			return false
		}
		i += off
		if i >= at && string(msg[i-at:i]) == quoted[:at] {
			return true
		}
		off = i + 1
	}
}

// headString returns the string after key in head when it holds no
// escape.
func headString(head []byte, key string) (string, bool) {
	i := bytes.Index(head, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := head[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// spliceAnnotations adds vigil's annotations to an event as the API server
// writes it (annotations last, or none) without encoding it again; nil
// when the event is laid out otherwise.
func (d *Decoder) spliceAnnotations(msg []byte, v *fastjson.Value, m meta) []byte {
	o := v.GetObject()
	n, i, annLast := o.Len(), 0, false
	o.Visit(func(k []byte, _ *fastjson.Value) {
		i++
		if i == n && string(k) == "annotations" {
			annLast = true
		}
	})
	ann := v.Get("annotations")
	end := len(msg)
	for end > 0 && isSpace(msg[end-1]) {
		end--
	}
	if end == 0 || msg[end-1] != '}' {
		return nil
	}
	var ins []byte
	at := end - 1
	switch {
	case ann == nil:
		ins = append(ins, `,"annotations":{`...)
		ins = appendVigilAnnotations(ins, m)
		ins = append(ins, '}')
	case annLast && ann.Type() == fastjson.TypeObject:
		for at--; at > 0 && isSpace(msg[at]); at-- {
		}
		if msg[at] != '}' {
			return nil
		}
		if ann.GetObject().Len() > 0 {
			ins = append(ins, ',')
		}
		ins = appendVigilAnnotations(ins, m)
	default:
		return nil
	}
	return d.emit(func(out []byte) []byte {
		out = append(out, msg[:at]...)
		out = append(out, ins...)
		return append(out, msg[at:end]...)
	})
}

// emit writes an event with write, into Out when it is set, and returns
// the event's bytes.
func (d *Decoder) emit(write func([]byte) []byte) []byte {
	start := len(d.Out)
	d.Out = write(d.Out)
	return d.Out[start:len(d.Out):len(d.Out)]
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func appendVigilAnnotations(b []byte, m meta) []byte {
	b = appendJSONString(b, AnnotationSource)
	b = append(b, ':')
	b = appendJSONString(b, string(m.provider))
	if m.record != "" {
		b = append(b, ',')
		b = appendJSONString(b, AnnotationRecord)
		b = append(b, ':')
		b = appendJSONString(b, m.record)
	}
	return b
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func (d *Decoder) annotate(ann *fastjson.Value, m meta, cut bool) {
	ann.Set(AnnotationSource, d.arena.NewString(string(m.provider)))
	if m.record != "" {
		ann.Set(AnnotationRecord, d.arena.NewString(m.record))
	}
	if cut {
		ann.Set(AnnotationTruncated, d.arena.NewString("true"))
	}
}
