package jsonscan

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
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
	return AppendStringRest(dst, b, i+1)
}

// AppendStringRest is AppendString for a string already read up to b[i],
// a byte inside it: it appends the value from there.
func AppendStringRest(dst, b []byte, i int) (out []byte, end int, ok bool) {
	// The value is never longer than what is left of b, so dst grows once
	// and the loop writes by index: eight bytes at a time between escapes
	// (a word may be written past the run; the next write covers it).
	dst = slices.Grow(dst, len(b)-i+8)
	w := len(dst)
	buf := dst[:cap(dst)]
	for {
		if i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			binary.LittleEndian.PutUint64(buf[w:], x)
			m := zeroBytes(x^quotes) | zeroBytes(x^backslashes)
			if m == 0 {
				i += 8
				w += 8
				continue
			}
			n := bits.TrailingZeros64(m) >> 3
			i += n
			w += n
		} else {
			for i < len(b) && b[i] != '"' && b[i] != '\\' {
				buf[w] = b[i]
				i++
				w++
			}
			if i >= len(b) {
				return buf[:w], i, false
			}
		}
		if b[i] == '"' {
			return buf[:w], i + 1, true
		}
		// An escape; as fastjson does, one it does not know is kept as
		// written.
		if i+1 >= len(b) {
			return buf[:w], i, false
		}
		c := b[i+1]
		i += 2
		if e := simpleEscapes[c]; e != 0 {
			buf[w] = e
			w++
			continue
		}
		if c != 'u' {
			buf[w] = '\\'
			buf[w+1] = c
			w += 2
			continue
		}
		r, n := unicodeEscape(b[i:])
		switch {
		case n == 0:
			w += copy(buf[w:], `\u`)
		case r < 0:
			// A lone surrogate: kept as written.
			w += copy(buf[w:], b[i-2:i+4])
			i += 4
		default:
			w += utf8.EncodeRune(buf[w:], r)
			i += n
		}
	}
}

// simpleEscapes maps the byte after a backslash to what it stands for,
// for the escapes of one byte.
var simpleEscapes = [256]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

const (
	ones        = 0x0101010101010101
	highs       = 0x8080808080808080
	quotes      = '"' * ones
	backslashes = '\\' * ones
)

// QuoteOrEscape returns the index of the first '"' or '\\' in b from i,
// or -1. Most strings of an event are short: their first sixteen bytes are
// looked at eight at a time, where IndexByte's setup costs more than the
// scan; a longer one is searched with IndexByte.
func QuoteOrEscape(b []byte, i int) int {
	for n := 0; n < 2 && i+8 <= len(b); n, i = n+1, i+8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if m := zeroBytes(x^quotes) | zeroBytes(x^backslashes); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	j := bytes.IndexByte(b[i:], '"')
	if j < 0 {
		j = len(b) - i
	}
	if k := bytes.IndexByte(b[i:i+j], '\\'); k >= 0 {
		return i + k
	}
	if i+j == len(b) {
		return -1
	}
	return i + j
}

// zeroBytes has the high bit set in the lowest byte of x that is zero (and
// maybe in higher ones, which a borrow can mark: only the lowest counts).
func zeroBytes(x uint64) uint64 {
	return (x - ones) &^ x & highs
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
