package detect

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/vigil-k8s/vigil/ingest"
)

// AppendJSON appends the alert's JSON (docs/alerts.md) to dst: the bytes
// encoding/json writes for it, without reflection.
func (a *Alert) AppendJSON(dst []byte) ([]byte, error) {
	for _, t := range [...]time.Time{a.Time, a.FirstTime, a.LastTime} {
		if !rfc3339Safe(t) {
			// encoding/json fails on it: let it say how.
			b, err := json.Marshal(plainAlert(*a))
			return append(dst, b...), err
		}
	}
	if a.SuppressedSince != nil && !rfc3339Safe(*a.SuppressedSince) {
		b, err := json.Marshal(plainAlert(*a))
		return append(dst, b...), err
	}
	b := append(dst, `{"rule":`...)
	b = appendJSONString(b, a.Rule)
	b = append(b, `,"title":`...)
	b = appendJSONString(b, a.Title)
	b = append(b, `,"severity":`...)
	b = appendJSONString(b, a.Severity.String())
	if len(a.Tags) > 0 {
		b = append(b, `,"tags":`...)
		b = appendJSONStrings(b, a.Tags)
	}
	b = appendOmitEmpty(b, `,"description":`, a.Description)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, a.Message)
	b = append(b, `,"time":`...)
	b = appendJSONTime(b, a.Time)
	b = appendOmitEmpty(b, `,"cluster":`, a.Cluster)
	b = append(b, `,"user":`...)
	b = appendUserInfo(b, &a.User)
	if a.ImpersonatedUser != nil {
		b = append(b, `,"impersonatedUser":`...)
		b = appendUserInfo(b, a.ImpersonatedUser)
	}
	if len(a.SourceIPs) > 0 {
		b = append(b, `,"sourceIPs":`...)
		b = appendJSONStrings(b, a.SourceIPs)
	}
	b = appendOmitEmpty(b, `,"userAgent":`, a.UserAgent)
	b = appendOmitEmpty(b, `,"verb":`, a.Verb)
	if r := a.ObjectRef; r != nil {
		b = append(b, `,"objectRef":`...)
		b = appendObjectRef(b, r)
	}
	b = appendOmitEmpty(b, `,"requestURI":`, a.RequestURI)
	if a.ResponseCode != 0 {
		b = append(b, `,"responseCode":`...)
		b = strconv.AppendInt(b, int64(a.ResponseCode), 10)
	}
	b = appendOmitEmpty(b, `,"execCommand":`, a.ExecCommand)
	b = append(b, `,"auditIDs":`...)
	b = appendJSONStrings(b, a.AuditIDs)
	b = append(b, `,"groupKey":`...)
	b = appendJSONString(b, a.GroupKey)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(a.Count), 10)
	if len(a.Distinct) > 0 {
		b = append(b, `,"distinct":`...)
		b = appendJSONStrings(b, a.Distinct)
	}
	b = append(b, `,"firstTime":`...)
	b = appendJSONTime(b, a.FirstTime)
	b = append(b, `,"lastTime":`...)
	b = appendJSONTime(b, a.LastTime)
	b = append(b, `,"fingerprint":`...)
	b = appendJSONString(b, a.Fingerprint)
	if a.Suppressed != 0 {
		b = append(b, `,"suppressed":`...)
		b = strconv.AppendInt(b, int64(a.Suppressed), 10)
	}
	if a.SuppressedSince != nil {
		b = append(b, `,"suppressedSince":`...)
		b = appendJSONTime(b, *a.SuppressedSince)
	}
	return append(b, '}'), nil
}

// MarshalJSON is AppendJSON for encoding/json.
func (a Alert) MarshalJSON() ([]byte, error) { return a.AppendJSON(make([]byte, 0, 1024)) }

// plainAlert is Alert without its methods: encoding/json's own encoding.
type plainAlert Alert

func appendUserInfo(b []byte, u *ingest.UserInfo) []byte {
	b = append(b, '{')
	n := len(b)
	field := func(name string) {
		if len(b) > n {
			b = append(b, ',')
		}
		b = append(append(append(b, '"'), name...), `":`...)
	}
	if u.Username != "" {
		field("username")
		b = appendJSONString(b, u.Username)
	}
	if u.UID != "" {
		field("uid")
		b = appendJSONString(b, u.UID)
	}
	if len(u.Groups) > 0 {
		field("groups")
		b = appendJSONStrings(b, u.Groups)
	}
	if len(u.Extra) > 0 {
		field("extra")
		b = append(b, '{')
		keys := make([]string, 0, len(u.Extra))
		for k := range u.Extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONStrings(b, u.Extra[k])
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendObjectRef(b []byte, r *ingest.ObjectRef) []byte {
	b = append(b, '{')
	n := len(b)
	for _, f := range [...]struct{ name, v string }{
		{"resource", r.Resource}, {"namespace", r.Namespace}, {"name", r.Name}, {"uid", r.UID},
		{"apiGroup", r.APIGroup}, {"apiVersion", r.APIVersion}, {"resourceVersion", r.ResourceVersion},
		{"subresource", r.Subresource},
	} {
		if f.v == "" {
			continue
		}
		if len(b) > n {
			b = append(b, ',')
		}
		b = append(append(append(b, '"'), f.name...), `":`...)
		b = appendJSONString(b, f.v)
	}
	return append(b, '}')
}

func appendOmitEmpty(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(append(b, key...), v)
}

// appendJSONStrings writes a list of strings; nil is null.
func appendJSONStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// rfc3339Safe reports whether encoding/json encodes t without an error.
func rfc3339Safe(t time.Time) bool {
	if y := t.Year(); y < 0 || y > 9999 {
		return false
	}
	_, off := t.Zone()
	return off%60 == 0 && off > -24*3600 && off < 24*3600
}

// appendJSONTime writes t as time.Time's MarshalJSON does (rfc3339Safe).
func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendJSONString writes s as encoding/json does, HTML characters
// escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
