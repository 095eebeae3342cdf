// Package jsonscan finds the parts of a JSON document by scanning its bytes,
// without building a tree and without a nesting limit: an EventList whose
// one item nests 400 levels deep still splits into its items, and an event
// whose body is too deep for the parser still yields its other members.
//
// It accepts exactly what github.com/valyala/fastjson's Parser accepts,
// nesting aside, so that a part it returns is one the parser reads
// (strings are not checked for valid escapes or UTF-8, numbers are
// fastjson's loose ones, NaN and Inf included).
package jsonscan

import (
	"bytes"
	"fmt"

	"github.com/valyala/fastjson"
)

// MaxDepth is the deepest value fastjson parses; Depth counts the same way.
const MaxDepth = fastjson.MaxDepth

// SyntaxError says where a document stops being JSON.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("offset %d: %s", e.Offset, e.Msg) }

func errAt(i int, format string, a ...any) error {
	return &SyntaxError{Offset: i, Msg: fmt.Sprintf(format, a...)}
}

// SkipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// End checks that nothing but whitespace follows index i.
func End(b []byte, i int) error {
	if i = SkipSpace(b, i); i < len(b) {
		return errAt(i, "unexpected %s after the JSON value", describe(b, i))
	}
	return nil
}

// Value checks the JSON value that starts at b[i] (after whitespace) and
// returns the index just past it and its depth: 1 for a scalar or an empty
// object or array, one more for each level of nesting, as fastjson counts
// (it refuses a depth over MaxDepth).
func Value(b []byte, i int) (end, depth int, err error) {
	var buf [64]byte
	stack := buf[:0] // the open objects and arrays, by their opening byte
	i = SkipSpace(b, i)
	for {
		// A value starts at i.
		if i >= len(b) {
			return i, depth, errAt(i, "unexpected end of input, want a value")
		}
		switch c := b[i]; c {
		case '{', '[':
			stack = append(stack, c)
			depth = max(depth, len(stack))
			j := SkipSpace(b, i+1)
			if j < len(b) && b[j] == closer(c) {
				stack = stack[:len(stack)-1]
				i = j + 1
				break
			}
			if c == '[' {
				i = j
				continue
			}
			if _, i, err = memberName(b, j); err != nil {
				return i, depth, err
			}
			continue
		case '"':
			depth = max(depth, len(stack)+1)
			if i, err = skipString(b, i); err != nil {
				return i, depth, err
			}
		default:
			depth = max(depth, len(stack)+1)
			if i, err = scalar(b, i); err != nil {
				return i, depth, err
			}
		}
		// After a value: close what ends here, then find the next value.
		for {
			if len(stack) == 0 {
				return i, depth, nil
			}
			top := stack[len(stack)-1]
			i = SkipSpace(b, i)
			if i >= len(b) {
				return i, depth, errAt(i, "unexpected end of input inside %s", kind(top))
			}
			if b[i] == closer(top) {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return i, depth, errAt(i, "unexpected %s in %s, want ',' or '%c'", describe(b, i), kind(top), closer(top))
			}
			i = SkipSpace(b, i+1)
			if top == '{' {
				if _, i, err = memberName(b, i); err != nil {
					return i, depth, err
				}
			}
			break
		}
	}
}

// Members reads the object that starts at b[i] (after whitespace). For
// each member it calls f with the member's name as written (between the
// quotes, escapes kept) and the index where its value starts; f checks the
// value (with Value, Elements or Members) and returns the index past it. A
// syntax error stops the scan: the members before it were passed to f.
// Members returns the index past the object.
func Members(b []byte, i int, f func(name []byte, start int) (end int, err error)) (int, error) {
	i = SkipSpace(b, i)
	if i >= len(b) || b[i] != '{' {
		return i, errAt(i, "unexpected %s, want an object", describe(b, i))
	}
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		nameEnd, start, err := memberName(b, i)
		if err != nil {
			return start, err
		}
		if i, err = f(b[i+1:nameEnd-1], start); err != nil {
			return i, err
		}
		i = SkipSpace(b, i)
		if i >= len(b) {
			return i, errAt(i, "unexpected end of input inside an object")
		}
		if b[i] == '}' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return i, errAt(i, "unexpected %s in an object, want ',' or '}'", describe(b, i))
		}
		i = SkipSpace(b, i+1)
	}
}

// Elements reads the array that starts at b[i] (after whitespace) and calls
// f with each element, which it has checked, and the element's depth. A
// syntax error stops the scan: the elements before it were passed to f.
// Elements returns the index past the array.
func Elements(b []byte, i int, f func(elem []byte, depth int)) (int, error) {
	i = SkipSpace(b, i)
	if i >= len(b) || b[i] != '[' {
		return i, errAt(i, "unexpected %s, want an array", describe(b, i))
	}
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		end, depth, err := Value(b, i)
		if err != nil {
			return end, err
		}
		f(b[i:end:end], depth)
		i = SkipSpace(b, end)
		if i >= len(b) {
			return i, errAt(i, "unexpected end of input inside an array")
		}
		if b[i] == ']' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return i, errAt(i, "unexpected %s in an array, want ',' or ']'", describe(b, i))
		}
		i = SkipSpace(b, i+1)
	}
}

// memberName reads `"name" :` at b[i] and returns the index past the
// name's closing quote and the index where the value starts (or where the
// error is).
func memberName(b []byte, i int) (nameEnd, start int, err error) {
	if i >= len(b) || b[i] != '"' {
		return i, i, errAt(i, "unexpected %s, want a member name", describe(b, i))
	}
	if nameEnd, err = skipString(b, i); err != nil {
		return nameEnd, nameEnd, err
	}
	i = SkipSpace(b, nameEnd)
	if i >= len(b) || b[i] != ':' {
		return nameEnd, i, errAt(i, "unexpected %s after a member name, want ':'", describe(b, i))
	}
	return nameEnd, SkipSpace(b, i+1), nil
}

// skipString returns the index past the string that starts at b[i] ('"'):
// a quote ends it unless an odd number of backslashes precede it.
func skipString(b []byte, i int) (int, error) {
	start := i
	for i++; ; {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b), errAt(start, "string not closed")
		}
		i += j
		k := i
		for k > start+1 && b[k-1] == '\\' {
			k--
		}
		i++
		if (i-1-k)%2 == 0 {
			return i, nil
		}
	}
}

// scalar returns the index past the literal or number at b[i], read as
// fastjson reads them.
func scalar(b []byte, i int) (int, error) {
	switch b[i] {
	case 't':
		return literal(b, i, "true")
	case 'f':
		return literal(b, i, "false")
	case 'n':
		if bytes.HasPrefix(b[i:], []byte("null")) {
			return i + 4, nil
		}
		if len(b)-i >= 3 && bytes.EqualFold(b[i:i+3], []byte("nan")) {
			return i + 3, nil
		}
		return i, errAt(i, "unexpected %s, want a value", describe(b, i))
	}
	start := i
	for ; i < len(b); i++ {
		if c := b[i]; (c >= '0' && c <= '9') || c == '.' || c == '-' || c == 'e' || c == 'E' || c == '+' {
			continue
		}
		if n := i - start; n == 0 || n == 1 && (b[start] == '-' || b[start] == '+') {
			if len(b)-i >= 3 && (bytes.EqualFold(b[i:i+3], []byte("inf")) || bytes.EqualFold(b[i:i+3], []byte("nan"))) {
				return i + 3, nil
			}
			return start, errAt(start, "unexpected %s, want a value", describe(b, start))
		}
		return i, nil
	}
	return i, nil
}

func literal(b []byte, i int, word string) (int, error) {
	if !bytes.HasPrefix(b[i:], []byte(word)) {
		return i, errAt(i, "unexpected %s, want %s", describe(b, i), word)
	}
	return i + len(word), nil
}

func closer(open byte) byte {
	if open == '{' {
		return '}'
	}
	return ']'
}

func kind(open byte) string {
	if open == '{' {
		return "an object"
	}
	return "an array"
}

// describe names what is at b[i] for an error message.
func describe(b []byte, i int) string {
	if i >= len(b) {
		return "end of input"
	}
	return fmt.Sprintf("%q", b[i:min(len(b), i+12)])
}

// Type names the JSON type of a value that Value accepted, as fastjson
// names them.
func Type(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return fastjson.TypeObject.String()
	case '[':
		return fastjson.TypeArray.String()
	case '"':
		return fastjson.TypeString.String()
	case 't':
		return fastjson.TypeTrue.String()
	case 'f':
		return fastjson.TypeFalse.String()
	}
	if bytes.Equal(v, []byte("null")) {
		return fastjson.TypeNull.String()
	}
	return fastjson.TypeNumber.String()
}

// String returns the value of a JSON string as fastjson unescapes it, and
// false when v is not a string.
func String(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), true
	}
	var p fastjson.Parser
	pv, err := p.ParseBytes(v)
	if err != nil {
		return "", false
	}
	return string(pv.GetStringBytes()), true
}

// Name returns a member name as Members passed it, unescaped.
func Name(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	s, _ := String(append(append([]byte{'"'}, raw...), '"'))
	return s
}
