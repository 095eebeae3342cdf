package incident

import (
	"cmp"
	"slices"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

// Tracker defaults.
const (
	DefaultMaxAlerts  = 1000
	DefaultMaxObjects = 200
	// recentKeys bounds the fingerprints and auditIDs remembered: enough
	// for the alerts of a correlation rule's window.
	recentKeys = 1 << 18
	maxLinks   = 100
	// maxActivityPoints bounds an incident's activity series.
	maxActivityPoints = 2000
	maxCredentials    = 20
)

// CredentialIDKey is the user.extra key under which kube-apiserver (1.31+)
// records the credential of a request: a service-account token's JTI
// ("JTI=…") or a client certificate's hash ("X509SHA256=…").
const CredentialIDKey = "authentication.kubernetes.io/credential-id"

// unauthenticated names requests without a user (a bad token), per
// source address.
const unauthenticated = "(unauthenticated)"

// Options configure a Tracker. The zero value is usable.
type Options struct {
	// LinkSeverity is the lowest severity of an alert that links two
	// identities (default high): a routine token mint or binding change
	// must not join unrelated activity into one incident.
	LinkSeverity detect.Severity
	// Announce is the severity at which an incident is announced as opened
	// (default medium); below it, it is tracked silently.
	Announce detect.Severity
	// MaxAlerts and MaxObjects bound what an incident lists (defaults
	// DefaultMaxAlerts, DefaultMaxObjects); the rest are counted.
	MaxAlerts, MaxObjects int
	// Idle closes an incident without an alert for this long of event
	// time, and forgets it (0: never, as replay wants).
	Idle time.Duration
	// MaxIncidents bounds the open incidents (0: no bound); past it the
	// least recently active is closed.
	MaxIncidents int
}

// Tracker groups alerts into incidents as they arrive: by identity, joined
// by a union-find over identities linked by alerts (a binding used by its
// subject, an impersonation, a token minted for a service account).
// Observe and Incidents must be called from one goroutine at a time; Note
// may be called from others, concurrently.
type Tracker struct {
	opts Options
	// Union-find over identities; a freed node's index is reused.
	nodes  map[string]int
	parent []int
	free   []int
	// open holds the state of each incident by its root node.
	open map[int]*state
	// byAudit maps the auditIDs of recent single-event alerts to their
	// identity, so that a correlation alert naming that event links it.
	byAudit *recentEvents
	// seen holds the fingerprints of recent alerts, to ignore repeats.
	seen *ingest.Dedup[string]
	// grants knows who wrote the bindings Note saw.
	grants *grants
	// latest is the newest alert time; sweep the event time of the last
	// look for idle incidents.
	latest, sweep time.Time
}

type auditRef struct {
	identity string
	// binding is set when the event wrote a (Cluster)RoleBinding.
	binding bool
}

// recentEvents is a map in bounded memory: two generations of at most
// half the bound each, the older dropped whole when the newer is full.
type recentEvents struct {
	gen       int
	cur, prev map[string]auditRef
}

func (r *recentEvents) get(id string) (auditRef, bool) {
	if ref, ok := r.cur[id]; ok {
		return ref, true
	}
	ref, ok := r.prev[id]
	return ref, ok
}

func (r *recentEvents) put(id string, ref auditRef) {
	if _, ok := r.cur[id]; !ok && len(r.cur) >= r.gen {
		r.prev, r.cur = r.cur, r.prev
		clear(r.cur)
	}
	r.cur[id] = ref
}

// NewTracker returns an empty tracker.
func NewTracker(o Options) *Tracker {
	o.LinkSeverity = cmp.Or(o.LinkSeverity, detect.SeverityHigh)
	o.Announce = cmp.Or(o.Announce, detect.SeverityMedium)
	o.MaxAlerts = cmp.Or(o.MaxAlerts, DefaultMaxAlerts)
	o.MaxObjects = cmp.Or(o.MaxObjects, DefaultMaxObjects)
	return &Tracker{opts: o, nodes: map[string]int{}, open: map[int]*state{},
		byAudit: &recentEvents{gen: recentKeys / 2, cur: map[string]auditRef{}, prev: map[string]auditRef{}},
		seen:    ingest.NewDedup[string](recentKeys, 0), grants: newGrants()}
}

// ChangeKind says how an incident changed.
type ChangeKind int

// Changes worth telling a person about.
const (
	// Opened: the incident reached Options.Announce for the first time.
	Opened ChangeKind = iota + 1
	// Escalated: an announced incident reached a higher severity or a new
	// kill-chain stage.
	Escalated
)

func (k ChangeKind) String() string {
	if k == Opened {
		return "opened"
	}
	return "escalated"
}

// Change is an incident opened or escalated by an alert.
type Change struct {
	Kind     ChangeKind
	Incident Incident
	// Cause is the alert that caused the change.
	Cause detect.Alert
}

// Observe adds an alert and reports whether its incident opened or
// escalated. Alerts of the incident rule itself, alerts about no request
// (no auditIDs) and repeats of a recent fingerprint are ignored.
func (t *Tracker) Observe(al detect.Alert) (Change, bool) {
	if al.Rule == Rule || len(al.AuditIDs) == 0 || t.seen.Seen(al.Fingerprint) {
		return Change{}, false
	}
	if al.Time.After(t.latest) {
		t.latest = al.Time
	}
	t.expire()
	root := t.find(t.node(identityOf(al)))
	st := t.open[root]
	if st == nil {
		st = newState(al.Fingerprint[:min(16, len(al.Fingerprint))])
		t.open[root] = st
	}
	// The level before is the highest of the incidents the alert touches:
	// a merge escalates only what it raises above all of them.
	var before level
	before.fold(st)
	st.add(al, t.opts)
	if len(al.AuditIDs) == 1 {
		ref, _ := t.byAudit.get(al.AuditIDs[0])
		t.byAudit.put(al.AuditIDs[0], auditRef{identity: identityOf(al), binding: ref.binding || isBinding(al)})
	}
	for _, l := range t.linksOf(al) {
		for _, name := range []string{l.From, l.To} {
			if n, ok := t.nodes[name]; ok && t.find(n) != root {
				before.fold(t.open[t.find(n)])
			}
		}
		root = t.union(root, l)
	}
	st = t.open[root]
	if len(t.open) > t.opts.MaxIncidents && t.opts.MaxIncidents > 0 {
		t.closeIdlest()
	}
	switch {
	case !st.announced && st.severity >= t.opts.Announce:
		st.announced = true
		return Change{Kind: Opened, Incident: st.snapshot(), Cause: al}, true
	case before.announced && (st.severity > before.severity || st.stages&^before.stages != 0):
		return Change{Kind: Escalated, Incident: st.snapshot(), Cause: al}, true
	}
	return Change{}, false
}

// level is how far incidents got: announced, their highest severity and
// the stages reached.
type level struct {
	announced bool
	severity  detect.Severity
	stages    uint8
}

func (l *level) fold(st *state) {
	if st == nil {
		return
	}
	l.announced = l.announced || st.announced
	l.severity = max(l.severity, st.severity)
	l.stages |= st.stages
}

// Note looks at an event as detection decodes it (detect.Options.Observe),
// to note who wrote RoleBindings and ClusterRoleBindings: a correlation
// alert naming such a write links its author even when the write raised
// no alert of its own (suppressed as a repeat). Optional; safe to call
// concurrently with itself and with Observe.
func (t *Tracker) Note(ev *ingest.Event) { t.grants.note(ev) }

// Incidents returns every open incident, highest score first.
func (t *Tracker) Incidents() []Incident {
	out := make([]Incident, 0, len(t.open))
	for _, st := range t.open {
		out = append(out, st.snapshot())
	}
	Sort(out)
	return out
}

// identityOf names the identity an alert belongs to: the authenticated
// user (an impersonator answers for what it did as someone else).
func identityOf(al detect.Alert) string {
	if al.User.Username != "" {
		return al.User.Username
	}
	if len(al.SourceIPs) > 0 {
		return unauthenticated + " " + al.SourceIPs[0]
	}
	return unauthenticated
}

func isBinding(al detect.Alert) bool {
	return al.ObjectRef != nil && (al.ObjectRef.Resource == "rolebindings" || al.ObjectRef.Resource == "clusterrolebindings")
}

// linksOf returns the identities an alert links to its own: the
// impersonated user, the service account a token was minted for, and the
// identities behind the other events of a correlation alert.
func (t *Tracker) linksOf(al detect.Alert) []Link {
	if al.Severity < t.opts.LinkSeverity {
		return nil
	}
	self := identityOf(al)
	var out []Link
	add := func(to, kind, auditID string) {
		if to != self {
			out = append(out, Link{From: self, To: to, Kind: kind, Rule: al.Rule, Time: al.Time, AuditID: auditID})
		}
	}
	if iu := al.ImpersonatedUser; iu != nil && iu.Username != "" {
		add(iu.Username, "impersonation", lastOf(al.AuditIDs))
	}
	if ref := al.ObjectRef; ref != nil && ref.Resource == "serviceaccounts" && ref.Subresource == "token" &&
		ref.Namespace != "" && ref.Name != "" && al.ResponseCode < 400 {
		add("system:serviceaccount:"+ref.Namespace+":"+ref.Name, "token", lastOf(al.AuditIDs))
	}
	if len(al.AuditIDs) > 1 {
		for _, id := range al.AuditIDs {
			ref, ok := t.byAudit.get(id)
			if !ok {
				ref.identity, ok = t.grants.author(id)
				ref.binding = true
			}
			if !ok || ref.identity == self {
				continue
			}
			// The earlier event's identity acted first: it is the From.
			kind := "correlation"
			if ref.binding {
				kind = "binding"
			}
			out = append(out, Link{From: ref.identity, To: self, Kind: kind, Rule: al.Rule, Time: al.Time, AuditID: id})
		}
	}
	return out
}

func lastOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// node returns the union-find node of an identity, adding it.
func (t *Tracker) node(name string) int {
	if n, ok := t.nodes[name]; ok {
		return n
	}
	var n int
	if k := len(t.free); k > 0 {
		n, t.free = t.free[k-1], t.free[:k-1]
		t.parent[n] = n
	} else {
		n = len(t.parent)
		t.parent = append(t.parent, n)
	}
	t.nodes[name] = n
	return n
}

func (t *Tracker) find(n int) int {
	for t.parent[n] != n {
		t.parent[n] = t.parent[t.parent[n]]
		n = t.parent[n]
	}
	return n
}

// union joins the incident of root a with those of both ends of l, and
// returns the root of the result.
func (t *Tracker) union(a int, l Link) int {
	sa := t.open[a]
	for _, name := range []string{l.From, l.To} {
		b := t.find(t.node(name))
		if b != a {
			sb := t.open[b]
			if sb == nil {
				sb = newState("")
			}
			t.parent[b] = a
			delete(t.open, b)
			sa = merge(sa, sb, t.opts)
			t.open[a] = sa
		}
		sa.member(name)
	}
	if len(sa.links) < maxLinks && !slices.ContainsFunc(sa.links, func(o Link) bool {
		return o.From == l.From && o.To == l.To && o.Kind == l.Kind
	}) {
		sa.links = append(sa.links, l)
	}
	return a
}

// expire closes the incidents idle for longer than Options.Idle, looking
// at most once a minute of event time.
func (t *Tracker) expire() {
	if t.opts.Idle <= 0 || t.latest.Sub(t.sweep) < time.Minute {
		return
	}
	t.sweep = t.latest
	for root, st := range t.open {
		if t.latest.Sub(st.active) > t.opts.Idle {
			t.close(root)
		}
	}
}

func (t *Tracker) closeIdlest() {
	idlest := -1
	for root, st := range t.open {
		if idlest < 0 || st.active.Before(t.open[idlest].active) {
			idlest = root
		}
	}
	t.close(idlest)
}

// close forgets an incident and frees its identities' nodes.
func (t *Tracker) close(root int) {
	st := t.open[root]
	delete(t.open, root)
	for name := range st.members {
		if n, ok := t.nodes[name]; ok {
			delete(t.nodes, name)
			t.free = append(t.free, n)
		}
	}
}
