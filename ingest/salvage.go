package ingest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/vigil-k8s/vigil/ingest/internal/jsonscan"
)

// salvage decodes what can be read of an event the parser refused (perr):
// the members of its top-level object that are whole JSON within the
// parser's nesting limit, up to the first syntax error. A request body
// nested 400 levels deep, which an attacker can write into a custom
// resource, then costs the body and not the event. The event is marked
// BodyUnparsed; it fails as Decode does when what is left is not an event.
func (d *Decoder) salvage(data []byte, perr error) (*Event, error) {
	part, why := readable(d.part[:0], data, nil)
	if why == nil {
		// The parser's own words, which name every level it went through.
		why = errors.New(oneLine(perr.Error(), 300))
	}
	bad := fmt.Errorf("%w: malformed JSON: %v", ErrNotEvent, why)
	d.part = part
	if part == nil {
		return nil, bad
	}
	v, err := d.p.ParseBytes(part)
	if err != nil {
		return nil, bad
	}
	ev, err := d.decodeValue(v)
	if err != nil {
		return nil, fmt.Errorf("%w; what could be read of it: %s", bad, strings.TrimPrefix(err.Error(), ErrNotEvent.Error()+": "))
	}
	ev.Vigil.BodyUnparsed = true
	return ev, nil
}

// readable appends to dst an object of the members of the object in data
// that fastjson can parse, leaving out those named in skip, up to the first
// syntax error; nil when there is none. It also says why data is not JSON
// the parser reads whole: the syntax error, or the deepest member.
func readable(dst, data []byte, skip func(name string) bool) ([]byte, error) {
	dst = append(dst, '{')
	n, deepest := 0, 0
	end, err := jsonscan.Members(data, 0, func(name []byte, start int) (int, error) {
		end, depth, err := jsonscan.Value(data, start)
		// The member sits one level below the top: depth MaxDepth is one
		// too deep.
		if err == nil && depth >= jsonscan.MaxDepth {
			deepest = max(deepest, depth+1)
			return end, nil
		}
		if err != nil || (skip != nil && skip(jsonscan.Name(name))) {
			return end, err
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(append(append(dst, '"'), name...), '"', ':')
		dst = append(dst, data[start:end]...)
		return end, nil
	})
	if err == nil {
		err = jsonscan.End(data, end)
	}
	if err == nil && deepest > 0 {
		err = fmt.Errorf("nested %d levels deep, over the %d the decoder reads", deepest, jsonscan.MaxDepth)
	}
	if n == 0 {
		return nil, err
	}
	return append(dst, '}'), err
}

func oneLine(s string, limit int) string {
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit], "") + "..."
	}
	return s
}

// truncatedStringBytes bounds each string of a truncated event when leaving
// out the bodies was not enough.
const truncatedStringBytes = 1024

// Truncate returns the metadata of an event too large to keep whole: its
// JSON without requestObject and responseObject, with the annotation
// vigil.dev/truncated "true", so that detection still sees who did what to
// which object. When that is still over limit bytes, strings longer than
// 1 KiB are cut to 1 KiB ending in "...". It fails when data is not an
// event or the result does not fit.
func Truncate(data []byte, limit int) ([]byte, error) {
	part, _ := readable(nil, data, func(name string) bool { return name == "requestObject" || name == "responseObject" })
	if part == nil {
		return nil, fmt.Errorf("%w: no member of the event could be read", ErrNotEvent)
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(part)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed JSON: %v", ErrNotEvent, err)
	}
	var a fastjson.Arena
	ann := v.Get("annotations")
	if ann == nil || ann.Type() != fastjson.TypeObject {
		ann = a.NewObject()
		v.Set("annotations", ann)
	}
	ann.Set(AnnotationTruncated, a.NewString("true"))
	out := v.MarshalTo(nil)
	if len(out) > limit {
		out = cutStrings(&a, v).MarshalTo(out[:0])
	}
	if len(out) > limit {
		return nil, fmt.Errorf("event is %d bytes without its bodies and with strings cut, over the limit of %d", len(out), limit)
	}
	var d Decoder
	if _, err := d.Decode(out); err != nil {
		return nil, err
	}
	return out, nil
}

// cutStrings returns a copy of v whose strings are cut to
// truncatedStringBytes.
func cutStrings(a *fastjson.Arena, v *fastjson.Value) *fastjson.Value {
	switch v.Type() {
	case fastjson.TypeObject:
		o := a.NewObject()
		v.GetObject().Visit(func(k []byte, v *fastjson.Value) { o.Set(string(k), cutStrings(a, v)) })
		return o
	case fastjson.TypeArray:
		arr := a.NewArray()
		for i, item := range v.GetArray() {
			arr.SetArrayItem(i, cutStrings(a, item))
		}
		return arr
	case fastjson.TypeString:
		s := v.GetStringBytes()
		if len(s) <= truncatedStringBytes {
			return v
		}
		return a.NewString(strings.ToValidUTF8(string(s[:truncatedStringBytes]), "") + "...")
	}
	return v
}
