package incident

import (
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
	cur, prev map[string]string
}

func newGrants() *grants {
	return &grants{cur: map[string]string{}, prev: map[string]string{}}
}

// note remembers the event if it wrote a binding.
func (g *grants) note(ev *ingest.Event) {
	if (ev.ObjectRef.Resource != "rolebindings" && ev.ObjectRef.Resource != "clusterrolebindings") ||
		!slices.Contains([]string{"create", "update", "patch"}, ev.Verb) || ev.ResponseStatus.Code >= 400 || ev.User.Username == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
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
