package envelope

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// splitter cuts a stream into JSON values: one per line (JSON lines),
// pretty-printed documents over many lines, and values written back to back
// with nothing between them (CloudWatch Logs records that Firehose
// concatenated into one S3 object). A value that a raw newline cuts inside
// a string, that a new line-initial "{" interrupts, or that the end of the
// stream cuts, is returned as it is with cut set: a writer stopped in the
// middle of it.
type splitter struct {
	br  *bufio.Reader
	max int
	buf []byte
	// pending holds bytes read past the end of the last value.
	pending []byte
	line    int
	depth   int
	inStr   bool
	esc     bool
	// multiline is set when the value's first line held only its opening
	// bracket: a pretty-printed document, where a line-initial "{" is not
	// a new value.
	multiline   bool
	atLineStart bool
}

func newSplitter(br *bufio.Reader, max int) *splitter {
	return &splitter{br: br, max: max, line: 1, atLineStart: true}
}

// value is one JSON value of a stream and the line it starts on.
type value struct {
	data []byte
	line int
	cut  bool
}

var errValueTooLong = errors.New("JSON value too long")

// next returns the next value, io.EOF at the end. The value's data is
// valid until the next call.
func (s *splitter) next() (value, error) {
	s.buf = s.buf[:0]
	s.depth, s.inStr, s.esc, s.multiline = 0, false, false, false
	startLine := 0
	for {
		chunk := s.pending
		s.pending = nil
		var rerr error
		if len(chunk) == 0 {
			chunk, rerr = s.br.ReadSlice('\n')
			if errors.Is(rerr, bufio.ErrBufferFull) {
				rerr = nil
			}
		}
		for i := 0; i < len(chunk); {
			if len(s.buf) == 0 {
				switch c := chunk[i]; c {
				case '\n':
					s.line++
					s.atLineStart = true
					i++
					continue
				case ' ', '\t', '\r':
					s.atLineStart = false
					i++
					continue
				case '{', '[':
					startLine = s.line
					s.depth = 1
					s.atLineStart = false
					s.buf = append(s.buf, c)
					i++
					continue
				default:
					// Not JSON: the rest of the line is one bad value.
					j := bytes.IndexByte(chunk[i:], '\n')
					if j < 0 {
						j = len(chunk) - i
					}
					s.buf = append(s.buf, chunk[i:i+j]...)
					s.pending = chunk[i+j:]
					return value{data: s.buf, line: s.line}, nil
				}
			}
			if s.inStr {
				if s.esc {
					s.esc = false
					s.buf = append(s.buf, chunk[i])
					i++
					continue
				}
				j := bytes.IndexAny(chunk[i:], "\"\\\n")
				if j < 0 {
					s.buf = append(s.buf, chunk[i:]...)
					break
				}
				s.buf = append(s.buf, chunk[i:i+j]...)
				i += j
				switch chunk[i] {
				case '\\':
					s.esc = true
				case '"':
					s.inStr = false
				case '\n':
					// A raw newline cannot be inside a JSON string: the
					// writer stopped in the middle of this value.
					s.line++
					s.atLineStart = true
					s.pending = chunk[i+1:]
					return value{data: s.buf, line: startLine, cut: true}, nil
				}
				s.buf = append(s.buf, chunk[i])
				i++
				continue
			}
			if s.atLineStart {
				s.atLineStart = false
				if chunk[i] == '{' && !s.multiline {
					// A JSON-lines value that never closed, followed by
					// the next one.
					s.pending = chunk[i:]
					return value{data: trimRight(s.buf), line: startLine, cut: true}, nil
				}
			}
			j := bytes.IndexAny(chunk[i:], "\"{}[]\n")
			if j < 0 {
				s.buf = append(s.buf, chunk[i:]...)
				break
			}
			s.buf = append(s.buf, chunk[i:i+j]...)
			i += j
			c := chunk[i]
			s.buf = append(s.buf, c)
			i++
			switch c {
			case '\n':
				s.line++
				if s.depth == 1 && lineIsBracket(s.buf[:len(s.buf)-1]) {
					s.multiline = true
				}
				s.atLineStart = true
			case '"':
				s.inStr = true
			case '{', '[':
				s.depth++
			case '}', ']':
				s.depth--
				if s.depth == 0 {
					s.pending = chunk[i:]
					return value{data: s.buf, line: startLine}, nil
				}
			}
			if len(s.buf) > s.max {
				return value{line: startLine}, fmt.Errorf("line %d: %w: over %d bytes", startLine, errValueTooLong, s.max)
			}
		}
		if len(s.buf) > s.max {
			return value{line: startLine}, fmt.Errorf("line %d: %w: over %d bytes", startLine, errValueTooLong, s.max)
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				if len(s.buf) > 0 {
					return value{data: trimRight(s.buf), line: startLine, cut: true}, nil
				}
				return value{}, io.EOF
			}
			return value{}, fmt.Errorf("line %d: %w", s.line, rerr)
		}
	}
}

// lineIsBracket reports whether the last line of buf is only "{" or "["
// (and blanks).
func lineIsBracket(buf []byte) bool {
	i := bytes.LastIndexByte(buf, '\n') + 1
	return len(bytes.TrimSpace(buf[i:])) == 1 && (bytes.TrimSpace(buf[i:])[0] == '{' || bytes.TrimSpace(buf[i:])[0] == '[')
}

func trimRight(b []byte) []byte {
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// lineSplitter reads JSON lines fast: each line is a value, or several
// written back to back ("}{" can only stand between two values: inside a
// string the brace would be followed by an escaped quote, and inside a
// document a closed object is followed by a comma or a bracket).
type lineSplitter struct {
	br  *bufio.Reader
	max int
	buf []byte
	// off is where the next value starts in buf; searched how far past
	// off a boundary was looked for.
	off, searched int
	lineDone      bool
	eof           bool
	line          int
	skipping      bool // the rest of an over-long line
}

func newLineSplitter(br *bufio.Reader, max int) *lineSplitter {
	return &lineSplitter{br: br, max: max}
}

var boundary = []byte("}{")

func (s *lineSplitter) next() (value, error) {
	for {
		data := s.buf[s.off:]
		if k := bytes.Index(data[s.searched:], boundary); k >= 0 {
			end := s.searched + k + 1
			s.off += end
			s.searched = 0
			return value{data: data[:end], line: s.line}, nil
		}
		if s.lineDone {
			s.buf, s.off, s.searched, s.lineDone = s.buf[:0], 0, 0, false
			if v := bytes.TrimSpace(data); len(v) > 0 {
				return value{data: v, line: s.line}, nil
			}
			continue
		}
		if s.eof {
			return value{}, io.EOF
		}
		if s.off > 0 {
			n := copy(s.buf, data)
			s.buf, s.off = s.buf[:n], 0
			data = s.buf
		}
		s.searched = max(0, len(data)-1)
		if len(data) == 0 {
			s.line++
		}
		chunk, err := s.br.ReadSlice('\n')
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			chunk = chunk[:len(chunk)-1]
			s.lineDone = true
		}
		if s.skipping {
			s.skipping = !s.lineDone
			s.lineDone = false
			s.buf = s.buf[:0]
		} else {
			s.buf = append(s.buf, chunk...)
		}
		switch {
		case err == nil || errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			s.eof, s.lineDone = true, true
		default:
			return value{}, fmt.Errorf("line %d: %w", s.line, err)
		}
		if len(s.buf)-s.off > s.max && bytes.Index(s.buf[s.off+s.searched:], boundary) < 0 {
			line := s.line
			s.buf, s.off, s.searched = s.buf[:0], 0, 0
			s.skipping, s.lineDone = !s.lineDone, false
			return value{}, fmt.Errorf("line %d: %w: over %d bytes", line, errValueTooLong, s.max)
		}
	}
}
