package envelope

import (
	"bytes"
	"strconv"
	"strings"
	"unsafe"

	"github.com/valyala/fastjson"
)

// fastMessage annotates an event laid out as the API server writes it
// (auditID and stage first, annotations last) without parsing it: the
// head gives the ids, and the annotations object must close the event,
// which an event cut short cannot do. Anything else takes the parser. A
// message that ends Out (fastAKS unescapes it there) is annotated in
// place.
func (d *Decoder) fastMessage(msg []byte, m meta) (Item, bool) {
	if m.provider == AKS && indexRare(msg, `"`+skippedObject+`"`, 'z') >= 0 {
		return Item{}, false
	}
	head := msg[:min(len(msg), 512)]
	id, ok := headString(head, `"auditID":"`, 'I')
	if !ok {
		return Item{}, false
	}
	stage, ok := headString(head, `"stage":"`, 'g')
	if !ok {
		return Item{}, false
	}
	end := len(msg)
	for end > 0 && isSpace(msg[end-1]) {
		end--
	}
	k := lastObjectMember(msg[:end], `,"annotations":`)
	if end == 0 || msg[end-1] != '}' || k < 0 {
		return Item{}, false
	}
	closeAt, complete := skipValue(msg[:end], k)
	if !complete || closeAt != end-1 || id.to > closeAt-1 || stage.to > closeAt-1 {
		return Item{}, false
	}
	empty := skipSpace(msg, k+1) == closeAt-1
	var out []byte
	if at := len(d.Out) - len(msg); at >= 0 && len(msg) > 0 && &d.Out[at] == &msg[0] {
		// In place: the closing braces move after vigil's annotations.
		var tail [8]byte
		if n := copy(tail[:], msg[closeAt-1:]); n == len(msg)-(closeAt-1) {
			d.Out = d.Out[:at+closeAt-1]
			if !empty {
				d.Out = append(d.Out, ',')
			}
			d.Out = appendVigilAnnotations(d.Out, m)
			d.Out = append(d.Out, tail[:end-(closeAt-1)]...)
			out = d.Out[at:len(d.Out):len(d.Out)]
		}
	}
	if out == nil {
		out = d.emit(func(out []byte) []byte {
			out = append(out, msg[:closeAt-1]...)
			if !empty {
				out = append(out, ',')
			}
			out = appendVigilAnnotations(out, m)
			return append(out, msg[closeAt-1:end]...)
		})
	}
	// The id and stage are copied as they were: the item's share its bytes.
	return Item{Data: out, Origin: m.origin, AuditID: id.in(out), Stage: stage.in(out), Provider: m.provider}, true
}

// indexRare is bytes.Index for a pattern holding a byte rare in audit
// events at pat[at]: the search starts there, as '"' is everywhere in JSON
// and would stop IndexByte at every string.
func indexRare(b []byte, pat string, rare byte) int {
	at := strings.IndexByte(pat, rare)
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte(pat[at:]))
		if i < 0 {
			return -1
		}
		i += off
		if i >= at && string(b[i-at:i]) == pat[:at] {
			return i - at
		}
		off = i + 1
	}
}

// lastObjectMember returns the index of the '{' that opens the last
// object written as key (`,"name":`) in b.
func lastObjectMember(b []byte, key string) int {
	for j := len(b); ; {
		if j = bytes.LastIndexByte(b[:j], '{'); j < 0 || bytes.HasSuffix(b[:j], []byte(key)) {
			return j
		}
	}
}

// headString finds the string after key (whose byte rare is rare) in head
// when it is not empty and holds no escape.
func headString(head []byte, key string, rare byte) (span, bool) {
	i := indexRare(head, key, rare)
	if i < 0 {
		return span{}, false
	}
	from := i + len(key)
	j := bytes.IndexByte(head[from:], '"')
	if j <= 0 || bytes.IndexByte(head[from:from+j], '\\') >= 0 {
		return span{}, false
	}
	return span{from, from + j}, true
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

// origin names the i-th item of a record ("ORIGIN: what[i]"), written in
// Out like the events: it lives as long as they do.
func (d *Decoder) origin(origin, what string, i int) string {
	start := len(d.Out)
	d.Out = append(d.Out, origin...)
	d.Out = append(d.Out, ": "...)
	d.Out = append(d.Out, what...)
	d.Out = append(d.Out, '[')
	d.Out = strconv.AppendInt(d.Out, int64(i), 10)
	d.Out = append(d.Out, ']')
	return unsafe.String(&d.Out[start], len(d.Out)-start)
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
	if !hasSpecial(s) {
		// The common case (ids, names): as it is.
		return append(append(b, s...), '"')
	}
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

// hasSpecial reports whether s holds a byte a JSON string must escape.
func hasSpecial[T string | []byte](s T) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
			return true
		}
	}
	return false
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
