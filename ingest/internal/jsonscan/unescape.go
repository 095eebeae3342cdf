package jsonscan

import (
	"unicode/utf16"
	"unicode/utf8"
)

// AppendString reads the JSON string that starts with the quote at b[i],
// appends its value to dst as fastjson unescapes it (best effort: an
// escape it does not know stays as written), and returns dst and the index
// past the closing quote; ok is false when the string does not close. It
// does in one pass what the parser does in two (find the end, then
// unescape), which matters for the audit events EKS and AKS carry as
// strings: every quote of the event is escaped there.
func AppendString(dst, b []byte, i int) (out []byte, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return dst, i, false
	}
	i++
	for {
		// Copy the run up to the next quote or backslash.
		start := i
		for i < len(b) && b[i] != '"' && b[i] != '\\' {
			i++
		}
		dst = append(dst, b[start:i]...)
		if i >= len(b) {
			return dst, i, false
		}
		if b[i] == '"' {
			return dst, i + 1, true
		}
		// An escape; as fastjson does, one it does not know is kept as
		// written.
		if i+1 >= len(b) {
			return dst, i, false
		}
		c := b[i+1]
		i += 2
		switch c {
		case '"', '\\', '/':
			dst = append(dst, c)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, n := unicodeEscape(b[i:])
			if n == 0 {
				dst = append(dst, '\\', 'u')
				continue
			}
			if r < 0 {
				// A lone surrogate: kept as written.
				dst = append(dst, '\\', 'u')
				dst = append(dst, b[i:i+4]...)
				i += 4
				continue
			}
			dst = utf8.AppendRune(dst, r)
			i += n
		default:
			dst = append(dst, '\\', c)
		}
	}
}

// unicodeEscape reads the four hex digits after \u at the start of b, and
// the low half of a surrogate pair after them, as fastjson does: it
// returns the rune and the bytes it took, 0 when b does not start with
// four hex digits, and a rune of -1 (with 4) for a high or low surrogate
// that no \u escape completes.
func unicodeEscape(b []byte) (rune, int) {
	x, ok := hex4(b)
	if !ok {
		return 0, 0
	}
	if !utf16.IsSurrogate(x) {
		return x, 4
	}
	if len(b) < 10 || b[4] != '\\' || b[5] != 'u' {
		return -1, 4
	}
	y, ok := hex4(b[6:])
	if !ok {
		return -1, 4
	}
	return utf16.DecodeRune(x, y), 10
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
