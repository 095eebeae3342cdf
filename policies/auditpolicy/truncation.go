package auditpolicy

import (
	"sync"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

// BodyReaders names the enabled rules that read an event's bodies: those
// whose audit block covers the event and asks for Request or
// RequestResponse. For an event a provider cut, they are the detections
// that may have missed it. It is safe for concurrent use.
type BodyReaders struct {
	mu     sync.Mutex
	dec    ingest.Decoder
	rules  []string
	scopes []scope
}

// NewBodyReaders indexes the rules of rs that need bodies.
func NewBodyReaders(rs *detect.RuleSet) *BodyReaders {
	b := &BodyReaders{}
	for _, r := range rs.Rules {
		if r.Spec.Audit.Level >= detect.LevelRequest {
			b.rules = append(b.rules, r.Spec.ID)
			b.scopes = append(b.scopes, newScope(r.Spec.Audit))
		}
	}
	return b
}

// Rules returns the ids of the rules that read the bodies of event (nil
// when it is not an audit event).
func (b *BodyReaders) Rules(event []byte) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	ev, err := b.dec.Decode(event)
	if err != nil {
		return nil
	}
	attrs := Attributes(ev)
	var out []string
	for i, s := range b.scopes {
		if s.matches(attrs) {
			out = append(out, b.rules[i])
		}
	}
	return out
}
