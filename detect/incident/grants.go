package incident

import (
	"bytes"
	"slices"
	"strings"
	"sync"

	"github.com/vigil-k8s/vigil/ingest"
)

// grantKeys bounds the binding writes Grants remembers.
const grantKeys = 1 << 16

// grants remembers who wrote RoleBindings and ClusterRoleBindings, read
// from the events themselves. A correlation rule names the binding write
// by its auditID; when that write raised no alert of its own (suppressed
// as a repeat of the same user's previous binding), grants still tells its
// author. scan and author may be called from different goroutines.
type grants struct {
	mu        sync.Mutex
	dec       ingest.Decoder
	cur, prev map[string]string
}

func newGrants() *grants {
	return &grants{cur: map[string]string{}, prev: map[string]string{}}
}

var (
	uriKey       = []byte(`"requestURI":"`)
	bindingsMark = []byte("bindings")
)

// scan looks at one raw event and remembers it if it wrote a binding. It
// decodes only events whose requestURI (near the start of the event) names
// bindings, so it costs little on the others.
func (g *grants) scan(data []byte) {
	head := data[:min(len(data), 4096)]
	if i := bytes.Index(head, uriKey); i >= 0 {
		uri := head[i+len(uriKey):]
		if j := bytes.IndexByte(uri, '"'); j >= 0 {
			uri = uri[:j]
		}
		if !bytes.Contains(uri, bindingsMark) {
			return
		}
	} else if !bytes.Contains(head, bindingsMark) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	ev, err := g.dec.Decode(data)
	if err != nil || (ev.ObjectRef.Resource != "rolebindings" && ev.ObjectRef.Resource != "clusterrolebindings") ||
		!slices.Contains([]string{"create", "update", "patch"}, ev.Verb) || ev.ResponseStatus.Code >= 400 || ev.User.Username == "" {
		return
	}
	if len(g.cur) >= grantKeys/2 {
		g.prev, g.cur = g.cur, g.prev
		clear(g.cur)
	}
	g.cur[strings.Clone(ev.AuditID)] = strings.Clone(ev.User.Username)
}

// author returns who wrote the binding of a request, if it was one.
func (g *grants) author(auditID string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if u, ok := g.cur[auditID]; ok {
		return u, true
	}
	u, ok := g.prev[auditID]
	return u, ok
}
