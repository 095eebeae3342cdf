package detect

import (
	"encoding/hex"
	"strings"
)

// auditID is an auditID as window state keeps it: the 16 bytes of a UUID
// (what the apiserver generates) without an allocation, any other string
// (a client may set its own Audit-ID) behind a pointer, so that the common
// case takes 24 bytes.
type auditID struct {
	u     [16]byte
	other *string
}

// newAuditID copies s, which may point into a decoder's buffer.
func newAuditID(s string) auditID {
	var a auditID
	// The nil UUID is kept as a string: all-zero bytes stand for "".
	if parseUUID(s, &a.u) && a.u != [16]byte{} {
		return a
	}
	o := strings.Clone(s)
	return auditID{other: &o}
}

// parseUUID accepts the canonical lower-case form only, so that String
// gives back exactly what came in.
func parseUUID(s string, u *[16]byte) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, ok1 := lowerHex(s[i])
		lo, ok2 := lowerHex(s[i+1])
		if !ok1 || !ok2 {
			return false
		}
		u[j] = hi<<4 | lo
		j++
		i += 2
	}
	return true
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// String returns the auditID as it came.
func (a auditID) String() string {
	if a.other != nil {
		return *a.other
	}
	if a.u == [16]byte{} {
		return ""
	}
	var b [36]byte
	hex.Encode(b[0:8], a.u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], a.u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], a.u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], a.u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], a.u[10:])
	return string(b[:])
}

// equal reports whether a and b are the same auditID.
func (a auditID) equal(b auditID) bool {
	if a.other != nil || b.other != nil {
		return a.other != nil && b.other != nil && *a.other == *b.other
	}
	return a.u == b.u
}

// MarshalText writes the auditID as it came (window snapshots).
func (a auditID) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText reads an auditID.
func (a *auditID) UnmarshalText(b []byte) error {
	*a = newAuditID(string(b))
	return nil
}
