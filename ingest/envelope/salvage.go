package envelope

import "errors"

// errNothingLeft means a cut document kept no complete member.
var errNothingLeft = errors.New("cut before its first complete field")

// salvage rebuilds a JSON object from a prefix of it: the members that are
// complete are kept, the member the cut went through is dropped with what
// followed it, and the open brackets are closed. keep names the members
// (at top level, by key) whose object value is salvaged the same way when
// the cut goes through it instead of being dropped. It returns the object
// and the key of the member the cut went through ("" when the cut came
// between members).
func salvage(b []byte, keep func(key string) bool) ([]byte, string, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, "", errors.New("not a JSON object")
	}
	s := salvager{b: b, keep: keep}
	out, complete := s.object(i, true)
	if complete {
		return out, "", nil
	}
	if len(out) <= 2 {
		return nil, s.lost, errNothingLeft
	}
	return out, s.lost, nil
}

type salvager struct {
	b    []byte
	keep func(string) bool
	lost string
}

// object reads the object at b[i]. When it is complete it returns its bytes
// and true; when the input ends inside it, the object cut back to its last
// complete member and closed.
func (s *salvager) object(i int, top bool) ([]byte, bool) {
	b := s.b
	start := i
	i++
	lastEnd := i // after the last complete member
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return closeAt(b[start:lastEnd]), false
		}
		switch b[i] {
		case '}':
			return b[start : i+1], true
		case ',':
			i++
			continue
		case '"':
		default:
			return closeAt(b[start:lastEnd]), false
		}
		keyStart := i
		keyEnd, ok := skipString(b, i)
		if !ok {
			return closeAt(b[start:lastEnd]), false
		}
		key := string(b[keyStart+1 : keyEnd-1])
		i = skipSpace(b, keyEnd)
		if i >= len(b) || b[i] != ':' {
			s.setLost(top, key)
			return closeAt(b[start:lastEnd]), false
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '{' && top && s.keep != nil && s.keep(key) {
			sub, complete := s.object(i, false)
			if !complete {
				s.setLost(top, key)
				out := append([]byte{}, b[start:lastEnd]...)
				if lastEnd > start+1 {
					out = append(out, ',')
				}
				out = append(out, b[keyStart:keyEnd]...)
				out = append(out, ':')
				out = append(out, sub...)
				return append(out, '}'), false
			}
			i += len(sub)
			lastEnd = i
			continue
		}
		end, ok := skipValue(b, i)
		if !ok {
			s.setLost(top, key)
			return closeAt(b[start:lastEnd]), false
		}
		i, lastEnd = end, end
	}
}

func (s *salvager) setLost(top bool, key string) {
	if top {
		s.lost = key
	} else if s.lost == "" {
		s.lost = key
	}
}

// closeAt returns the object prefix (ending after a complete member, or
// just "{") with its closing brace.
func closeAt(prefix []byte) []byte {
	out := make([]byte, 0, len(prefix)+1)
	out = append(out, prefix...)
	return append(out, '}')
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] ('"').
func skipString(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return len(b), false
}

// skipValue returns the index after the JSON value starting at b[i], and
// false when the input ends inside it. A scalar must be followed by a
// delimiter to count as complete: the cut may have gone through a number.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, ok := skipString(b, j)
				if !ok {
					return len(b), false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return len(b), false
	default:
		for j := i; j < len(b); j++ {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j, true
			}
		}
		return len(b), false
	}
}
