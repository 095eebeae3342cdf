package incident

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/detect"
)

// state is an open incident as the tracker builds it.
type state struct {
	id          string
	first, last time.Time
	// active is the time of the newest alert, for idleness.
	active     time.Time
	members    map[string]*memberState
	links      []Link
	rules      map[string]*ruleState
	tactics    map[string]time.Time
	stageTimes [StageImpact + 1]time.Time
	// stages has bit s set when Stage s was reached.
	stages         uint8
	techniques     map[string]bool
	ips, agents    map[string]int
	objects        map[objectKey]*Object
	objectsOmitted int
	alerts         []AlertRef
	alertsOmitted  int
	activity       *Series[detect.Severity]
	alertCount     int
	severity       detect.Severity
	announced      bool
}

type memberState struct {
	Identity
	creds  map[string]bool
	weight float64
}

type ruleState struct{ hit RuleHit }

type objectKey struct{ resource, subresource, namespace, name string }

func newState(id string) *state {
	return &state{id: id, members: map[string]*memberState{}, rules: map[string]*ruleState{},
		tactics: map[string]time.Time{}, techniques: map[string]bool{}, ips: map[string]int{},
		agents: map[string]int{}, objects: map[objectKey]*Object{}, activity: NewSeries[detect.Severity](maxActivityPoints)}
}

func (st *state) member(name string) *memberState {
	m := st.members[name]
	if m == nil {
		m = &memberState{Identity: Identity{Name: name, Kind: kindOf(name)}, creds: map[string]bool{}}
		st.members[name] = m
	}
	return m
}

var writeVerbs = []string{"create", "update", "patch", "delete", "deletecollection"}

// add folds an alert into the incident.
func (st *state) add(al detect.Alert, o Options) {
	first := cmp.Or(al.FirstTime, al.Time)
	last := cmp.Or(al.LastTime, al.Time)
	if st.first.IsZero() || first.Before(st.first) {
		st.first = first
	}
	if last.After(st.last) {
		st.last = last
	}
	if al.Time.After(st.active) {
		st.active = al.Time
	}
	st.alertCount++
	st.severity = max(st.severity, al.Severity)
	st.activity.Add(al.Time, al.Severity, 1)

	m := st.member(identityOf(al))
	m.Alerts++
	m.Severity = max(m.Severity, al.Severity)
	m.weight += severityWeight[al.Severity]
	if m.FirstTime.IsZero() || first.Before(m.FirstTime) {
		m.FirstTime = first
	}
	if last.After(m.LastTime) {
		m.LastTime = last
	}
	for _, c := range al.User.Extra[CredentialIDKey] {
		if len(m.creds) < maxCredentials {
			m.creds[c] = true
		}
	}

	r := st.rules[al.Rule]
	if r == nil {
		r = &ruleState{hit: RuleHit{Rule: al.Rule, Title: al.Title, Severity: al.Severity, Tactics: TacticsOf(al.Tags), FirstTime: first}}
		st.rules[al.Rule] = r
	}
	r.hit.Alerts++
	r.hit.Events += max(al.Count, 1)
	r.hit.Severity = max(r.hit.Severity, al.Severity)
	r.hit.FirstTime = minTime(r.hit.FirstTime, first)
	if last.After(r.hit.LastTime) {
		r.hit.LastTime = last
	}
	for _, tactic := range r.hit.Tactics {
		st.tactics[tactic] = minTime(st.tactics[tactic], first)
		if s := StageOf(tactic); s != NoStage {
			st.stages |= 1 << s
			st.stageTimes[s] = minTime(st.stageTimes[s], first)
		}
	}
	for _, id := range Techniques(al.Tags) {
		st.techniques[id] = true
	}
	for _, ip := range al.SourceIPs {
		st.ips[ip]++
	}
	if al.UserAgent != "" {
		st.agents[al.UserAgent]++
	}
	object := ""
	if ref := al.ObjectRef; ref != nil && ref.Resource != "" {
		k := objectKey{ref.Resource, ref.Subresource, ref.Namespace, ref.Name}
		ob := st.objects[k]
		if ob == nil && len(st.objects) >= o.MaxObjects {
			st.objectsOmitted++
		} else {
			if ob == nil {
				ob = &Object{Resource: ref.Resource, Subresource: ref.Subresource, Namespace: ref.Namespace, Name: ref.Name, FirstTime: first}
				st.objects[k] = ob
			}
			ob.Alerts++
			ob.FirstTime = minTime(ob.FirstTime, first)
			if al.Verb != "" && !slices.Contains(ob.Verbs, al.Verb) {
				ob.Verbs = append(ob.Verbs, al.Verb)
			}
			if slices.Contains(writeVerbs, al.Verb) && al.ResponseCode > 0 && al.ResponseCode < 400 && !strings.HasSuffix(ref.Resource, "reviews") {
				// Access and token reviews are questions, not objects.
				ob.Written = true
			}
		}
		object = Object{Resource: ref.Resource, Subresource: ref.Subresource, Namespace: ref.Namespace, Name: ref.Name}.String()
	}
	if len(st.alerts) >= o.MaxAlerts {
		st.alertsOmitted++
		return
	}
	ref := AlertRef{Time: al.Time, Rule: al.Rule, Severity: al.Severity, User: identityOf(al), Verb: al.Verb,
		Object: object, ResponseCode: al.ResponseCode, UserAgent: al.UserAgent, Message: al.Message,
		Count: al.Count, AuditIDs: al.AuditIDs, Fingerprint: al.Fingerprint}
	if al.ImpersonatedUser != nil {
		ref.ImpersonatedUser = al.ImpersonatedUser.Username
	}
	if len(al.SourceIPs) > 0 {
		ref.SourceIP = al.SourceIPs[0]
	}
	st.alerts = append(st.alerts, ref)
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// merge joins two incidents into the larger one; the result keeps the id
// of the announced one, or else of the older.
func merge(a, b *state, o Options) *state {
	if len(b.alerts)+len(b.members) > len(a.alerts)+len(a.members) {
		a, b = b, a
	}
	// The id sinks were told about wins, then the older.
	if b.id != "" && (a.id == "" || (b.announced && !a.announced) ||
		(b.announced == a.announced && (b.first.Before(a.first) || (b.first.Equal(a.first) && b.id < a.id)))) {
		a.id = b.id
	}
	if a.first.IsZero() || (!b.first.IsZero() && b.first.Before(a.first)) {
		a.first = b.first
	}
	if b.last.After(a.last) {
		a.last = b.last
	}
	if b.active.After(a.active) {
		a.active = b.active
	}
	for name, bm := range b.members {
		am := a.member(name)
		am.Alerts += bm.Alerts
		am.Severity = max(am.Severity, bm.Severity)
		am.weight += bm.weight
		if !bm.FirstTime.IsZero() {
			am.FirstTime = minTime(am.FirstTime, bm.FirstTime)
		}
		if bm.LastTime.After(am.LastTime) {
			am.LastTime = bm.LastTime
		}
		for c := range bm.creds {
			if len(am.creds) < maxCredentials {
				am.creds[c] = true
			}
		}
	}
	a.links = append(a.links, b.links[:min(len(b.links), maxLinks-min(len(a.links), maxLinks))]...)
	for id, br := range b.rules {
		ar := a.rules[id]
		if ar == nil {
			a.rules[id] = br
			continue
		}
		ar.hit.Alerts += br.hit.Alerts
		ar.hit.Events += br.hit.Events
		ar.hit.Severity = max(ar.hit.Severity, br.hit.Severity)
		ar.hit.FirstTime = minTime(ar.hit.FirstTime, br.hit.FirstTime)
		if br.hit.LastTime.After(ar.hit.LastTime) {
			ar.hit.LastTime = br.hit.LastTime
		}
	}
	for tactic, t := range b.tactics {
		a.tactics[tactic] = minTime(a.tactics[tactic], t)
	}
	a.stages |= b.stages
	for s, t := range b.stageTimes {
		if !t.IsZero() {
			a.stageTimes[s] = minTime(a.stageTimes[s], t)
		}
	}
	maps.Copy(a.techniques, b.techniques)
	for ip, n := range b.ips {
		a.ips[ip] += n
	}
	for ua, n := range b.agents {
		a.agents[ua] += n
	}
	for k, bo := range b.objects {
		ao := a.objects[k]
		switch {
		case ao != nil:
			ao.Alerts += bo.Alerts
			ao.FirstTime = minTime(ao.FirstTime, bo.FirstTime)
			ao.Written = ao.Written || bo.Written
			for _, v := range bo.Verbs {
				if !slices.Contains(ao.Verbs, v) {
					ao.Verbs = append(ao.Verbs, v)
				}
			}
		case len(a.objects) < o.MaxObjects:
			a.objects[k] = bo
		default:
			a.objectsOmitted++
		}
	}
	a.objectsOmitted += b.objectsOmitted
	keep := min(len(b.alerts), max(o.MaxAlerts-len(a.alerts), 0))
	a.alerts = append(a.alerts, b.alerts[:keep]...)
	a.alertsOmitted += b.alertsOmitted + len(b.alerts) - keep
	a.alertCount += b.alertCount
	a.activity.Merge(b.activity)
	a.severity = max(a.severity, b.severity)
	a.announced = a.announced || b.announced
	return a
}

// snapshot returns the incident as it stands.
func (st *state) snapshot() Incident {
	inc := Incident{ID: st.id, Severity: st.severity, FirstTime: st.first, LastTime: st.last,
		Links: slices.Clone(st.links), AlertCount: st.alertCount, AlertsOmitted: st.alertsOmitted,
		ObjectsOmitted: st.objectsOmitted, SourceIPs: sortedCounts(st.ips), UserAgents: sortedCounts(st.agents)}
	members := slices.Collect(maps.Values(st.members))
	slices.SortFunc(members, func(a, b *memberState) int {
		return cmp.Or(cmp.Compare(b.weight, a.weight), strings.Compare(a.Name, b.Name))
	})
	for _, m := range members {
		id := m.Identity
		id.Credentials = slices.Sorted(maps.Keys(m.creds))
		inc.Identities = append(inc.Identities, id)
	}
	for _, tactic := range Tactics {
		if t, ok := st.tactics[tactic]; ok {
			inc.Tactics = append(inc.Tactics, TacticHit{tactic, t})
		}
	}
	for s := StageDiscovery; s <= StageImpact; s++ {
		if st.stages&(1<<s) != 0 {
			inc.Stages = append(inc.Stages, StageHit{s, st.stageTimes[s]})
		}
	}
	inc.Techniques = slices.Sorted(maps.Keys(st.techniques))
	for _, ob := range st.objects {
		o := *ob
		o.Verbs = slices.Clone(o.Verbs)
		inc.Objects = append(inc.Objects, o)
	}
	// What the incident changed comes first.
	slices.SortFunc(inc.Objects, func(a, b Object) int {
		return cmp.Or(boolOrder(b.Written, a.Written), cmp.Compare(b.Alerts, a.Alerts), a.FirstTime.Compare(b.FirstTime),
			strings.Compare(a.String(), b.String()))
	})
	for _, r := range st.rules {
		inc.Rules = append(inc.Rules, r.hit)
	}
	slices.SortFunc(inc.Rules, func(a, b RuleHit) int {
		return cmp.Or(cmp.Compare(b.Severity, a.Severity), cmp.Compare(b.Alerts, a.Alerts), strings.Compare(a.Rule, b.Rule))
	})
	inc.Alerts = slices.Clone(st.alerts)
	slices.SortStableFunc(inc.Alerts, func(a, b AlertRef) int {
		return cmp.Or(a.Time.Compare(b.Time), strings.Compare(a.Fingerprint, b.Fingerprint))
	})
	inc.Activity = Activity{StepSeconds: int64(st.activity.Step() / time.Second), Points: st.activity.Points()}
	inc.Score = score(st.rules, len(inc.Stages))
	inc.Summary = summarize(&inc)
	return inc
}

func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
