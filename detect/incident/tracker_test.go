package incident

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

var t0 = time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)

// alert is a named alert fixture: user does verb on resource at minute m.
type alert struct {
	rule, user, verb, resource, ns, name string
	sev                                  detect.Severity
	tags                                 []string
	m                                    int
	auditIDs                             []string
	as                                   string
	code                                 int
	subresource                          string
}

func (a alert) build() detect.Alert {
	at := t0.Add(time.Duration(a.m) * time.Minute)
	ids := a.auditIDs
	if ids == nil {
		ids = []string{fmt.Sprintf("%s-%s-%d", a.rule, a.user, a.m)}
	}
	al := detect.Alert{Rule: a.rule, Title: a.rule, Severity: a.sev, Tags: a.tags, Message: a.rule + " by " + a.user,
		Time: at, User: ingest.UserInfo{Username: a.user}, SourceIPs: []string{"10.0.0.7"}, UserAgent: "kubectl/v1.33.1",
		Verb: a.verb, ResponseCode: a.code, AuditIDs: ids, GroupKey: ids[0], Count: len(ids), FirstTime: at, LastTime: at}
	if a.resource != "" {
		al.ObjectRef = &ingest.ObjectRef{Resource: a.resource, Subresource: a.subresource, Namespace: a.ns, Name: a.name}
	}
	if a.as != "" {
		al.ImpersonatedUser = &ingest.UserInfo{Username: a.as}
	}
	al.Fingerprint = detect.Fingerprint(al.Rule, al.GroupKey, al.FirstTime)
	return al
}

var (
	bindTags = []string{"attack.privilege-escalation", "attack.persistence", "T1098.006"}
	readTags = []string{"attack.credential-access", "T1552.007"}
	execTags = []string{"T1609"}
	probe    = []string{"attack.discovery", "T1613"}
)

func TestTracker_Grouping(t *testing.T) {
	const sa = "system:serviceaccount:ci:deployer"
	tests := []struct {
		name   string
		alerts []alert
		// want lists each incident's identities, highest score first.
		want [][]string
	}{{
		name: "one identity, one incident",
		alerts: []alert{
			{rule: "secret-read", user: "mallory", verb: "get", resource: "secrets", sev: detect.SeverityLow, tags: readTags, m: 1},
			{rule: "pod-exec", user: "mallory", verb: "get", resource: "pods", subresource: "exec", sev: detect.SeverityMedium, tags: execTags, m: 2},
		},
		want: [][]string{{"mallory"}},
	}, {
		name: "a binding used by its subject joins granter and grantee",
		alerts: []alert{
			{rule: "bind", user: "admin", verb: "create", resource: "clusterrolebindings", name: "x", sev: detect.SeverityCritical, tags: bindTags, m: 1, auditIDs: []string{"b1"}, code: 201},
			{rule: "secret-read", user: sa, verb: "list", resource: "secrets", sev: detect.SeverityLow, tags: readTags, m: 2, auditIDs: []string{"u1"}},
			{rule: "grant-then-use", user: sa, verb: "list", resource: "secrets", sev: detect.SeverityCritical, tags: bindTags, m: 2, auditIDs: []string{"b1", "u1"}},
			{rule: "secret-read", user: "alice", verb: "get", resource: "secrets", sev: detect.SeverityLow, tags: readTags, m: 3},
		},
		want: [][]string{{sa, "admin"}, {"alice"}},
	}, {
		name: "a correlation below the link severity links nothing",
		alerts: []alert{
			{rule: "forbidden", user: "u1", verb: "list", resource: "pods", sev: detect.SeverityLow, tags: probe, m: 1, auditIDs: []string{"f1"}},
			{rule: "forbidden", user: "u2", verb: "list", resource: "pods", sev: detect.SeverityLow, tags: probe, m: 1, auditIDs: []string{"f2"}},
			{rule: "burst-ip", user: "u2", verb: "list", resource: "pods", sev: detect.SeverityMedium, tags: probe, m: 1, auditIDs: []string{"f1", "f2"}},
		},
		want: [][]string{{"u2"}, {"u1"}},
	}, {
		name: "impersonation joins the impersonated identity",
		alerts: []alert{
			{rule: "impersonation-privileged", user: "admin", as: "system:node:n1", verb: "list", resource: "nodes", sev: detect.SeverityHigh, tags: []string{"attack.privilege-escalation"}, m: 1},
			{rule: "node-odd", user: "system:node:n1", verb: "list", resource: "secrets", sev: detect.SeverityMedium, tags: readTags, m: 2},
		},
		want: [][]string{{"admin", "system:node:n1"}},
	}, {
		name: "a token minted for a service account joins it",
		alerts: []alert{
			{rule: "token-kube-system", user: "bob", verb: "create", resource: "serviceaccounts", subresource: "token", ns: "kube-system", name: "default", code: 201, sev: detect.SeverityHigh, tags: readTags, m: 1},
			{rule: "secret-read", user: "system:serviceaccount:kube-system:default", verb: "list", resource: "secrets", sev: detect.SeverityLow, tags: readTags, m: 5},
		},
		want: [][]string{{"bob", "system:serviceaccount:kube-system:default"}},
	}, {
		name: "links chain across three identities",
		alerts: []alert{
			{rule: "impersonation-privileged", user: "a", as: "b", verb: "get", resource: "pods", sev: detect.SeverityHigh, m: 1},
			{rule: "impersonation-privileged", user: "c", as: "b", verb: "get", resource: "pods", sev: detect.SeverityHigh, m: 2},
			{rule: "pod-exec", user: "d", verb: "get", resource: "pods", sev: detect.SeverityHigh, tags: execTags, m: 3},
		},
		want: [][]string{{"a", "c", "b"}, {"d"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(Options{})
			for _, a := range tt.alerts {
				tr.Observe(a.build())
			}
			var got [][]string
			for _, inc := range tr.Incidents() {
				var names []string
				for _, id := range inc.Identities {
					names = append(names, id.Name)
				}
				got = append(got, names)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("incidents:\ngot  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestTracker_ScoreStagesAndSummary(t *testing.T) {
	tr := NewTracker(Options{})
	for i, a := range []alert{
		{rule: "forbidden", user: "mallory", verb: "list", resource: "secrets", sev: detect.SeverityLow, tags: probe},
		{rule: "forbidden", user: "mallory", verb: "list", resource: "pods", sev: detect.SeverityLow, tags: probe},
		{rule: "secret-read", user: "mallory", verb: "get", resource: "secrets", ns: "prod", name: "db", sev: detect.SeverityLow, tags: readTags},
		{rule: "bind", user: "mallory", verb: "create", resource: "rolebindings", ns: "prod", name: "x", code: 201, sev: detect.SeverityCritical, tags: bindTags},
	} {
		a.m = i
		tr.Observe(a.build())
	}
	incs := tr.Incidents()
	if len(incs) != 1 {
		t.Fatalf("got %d incidents, want 1", len(incs))
	}
	inc := incs[0]
	var stages []string
	for _, s := range inc.Stages {
		stages = append(stages, s.Stage.String())
	}
	wantStages := []string{"discovery", "credential access", "privilege escalation", "persistence"}
	if !slices.Equal(stages, wantStages) {
		t.Errorf("stages %v, want %v", stages, wantStages)
	}
	if inc.Stages[0].FirstTime != t0 || inc.Stages[3].FirstTime != t0.Add(3*time.Minute) {
		t.Errorf("stage times %v", inc.Stages)
	}
	// (2×(1+log2 2) + 2 + 25) × (1 + 0.5×3) = 31 × 2.5
	if inc.Score != 78 {
		t.Errorf("score %d, want 78", inc.Score)
	}
	want := "mallory: 4 alerts up to critical over 3m0s; reached discovery → credential access → privilege escalation → persistence; worst: bind"
	if inc.Summary != want {
		t.Errorf("summary\ngot  %s\nwant %s", inc.Summary, want)
	}
	written := 0
	for _, o := range inc.Objects {
		if o.Written {
			written++
			if o.String() != "rolebindings prod/x" {
				t.Errorf("written object %s", o)
			}
		}
	}
	if written != 1 || len(inc.Objects) != 4 {
		t.Errorf("objects %+v", inc.Objects)
	}
}

func TestTracker_Changes(t *testing.T) {
	tr := NewTracker(Options{})
	type step struct {
		a    alert
		want string // "", "opened" or "escalated"
	}
	steps := []step{
		{alert{rule: "forbidden", user: "mallory", verb: "list", resource: "pods", sev: detect.SeverityLow, tags: probe, m: 0}, ""},
		{alert{rule: "secret-read", user: "mallory", verb: "get", resource: "secrets", sev: detect.SeverityMedium, tags: readTags, m: 1}, "opened"},
		{alert{rule: "secret-read", user: "mallory", verb: "get", resource: "secrets", sev: detect.SeverityMedium, tags: readTags, m: 2}, ""},
		{alert{rule: "bind", user: "mallory", verb: "create", resource: "rolebindings", sev: detect.SeverityMedium, tags: bindTags, m: 3}, "escalated"},
		{alert{rule: "exec", user: "mallory", verb: "get", resource: "pods", sev: detect.SeverityHigh, tags: execTags, m: 4}, "escalated"},
		{alert{rule: "exec", user: "mallory", verb: "get", resource: "pods", sev: detect.SeverityHigh, tags: execTags, m: 5}, ""},
	}
	var fps []string
	for i, s := range steps {
		al := s.a.build()
		c, ok := tr.Observe(al)
		got := ""
		if ok {
			got = c.Kind.String()
			ia := c.Alert()
			if ia.Rule != Rule || ia.Severity != c.Incident.Severity || ia.GroupKey != c.Incident.ID || ia.Count != i+1 {
				t.Errorf("step %d: incident alert %+v", i, ia)
			}
			fps = append(fps, ia.Fingerprint)
		}
		if got != s.want {
			t.Errorf("step %d (%s): change %q, want %q", i, s.a.rule, got, s.want)
		}
		// The same alert again (a redelivery) changes nothing.
		if _, ok := tr.Observe(al); ok {
			t.Errorf("step %d: a repeated alert changed the incident", i)
		}
	}
	if len(slices.Compact(slices.Clone(fps))) != len(fps) {
		t.Errorf("incident alert fingerprints repeat: %v", fps)
	}
	if n := tr.Incidents()[0].AlertCount; n != len(steps) {
		t.Errorf("alert count %d, want %d", n, len(steps))
	}
}

func TestTracker_IdleAndBounds(t *testing.T) {
	tr := NewTracker(Options{Idle: time.Hour, MaxIncidents: 2, MaxAlerts: 2, MaxObjects: 1})
	for i, u := range []string{"a", "a", "a", "b"} {
		tr.Observe(alert{rule: "r", user: u, verb: "get", resource: "pods", name: fmt.Sprint(i), sev: detect.SeverityLow, m: i}.build())
	}
	incs := tr.Incidents()
	if len(incs) != 2 {
		t.Fatalf("%d incidents, want 2", len(incs))
	}
	a := incs[0]
	if a.AlertCount != 3 || len(a.Alerts) != 2 || a.AlertsOmitted != 1 || len(a.Objects) != 1 || a.ObjectsOmitted != 2 {
		t.Errorf("bounds: count %d listed %d omitted %d objects %d omitted %d", a.AlertCount, len(a.Alerts), a.AlertsOmitted, len(a.Objects), a.ObjectsOmitted)
	}
	// Two hours later, both are idle and closed; a third identity opens.
	tr.Observe(alert{rule: "r", user: "c", verb: "get", resource: "pods", sev: detect.SeverityLow, m: 180}.build())
	incs = tr.Incidents()
	if len(incs) != 1 || incs[0].Identities[0].Name != "c" {
		t.Fatalf("after idle: %v", incs)
	}
	// Past MaxIncidents the least recently active closes.
	tr.Observe(alert{rule: "r", user: "d", verb: "get", resource: "pods", sev: detect.SeverityLow, m: 181}.build())
	tr.Observe(alert{rule: "r", user: "e", verb: "get", resource: "pods", sev: detect.SeverityLow, m: 182}.build())
	var names []string
	for _, inc := range tr.Incidents() {
		names = append(names, inc.Identities[0].Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"d", "e"}) {
		t.Errorf("open incidents %v, want [d e]", names)
	}
	if len(tr.nodes) != 2 || len(tr.free) != len(tr.parent)-2 {
		t.Errorf("closed incidents leave %d identities, %d of %d nodes free", len(tr.nodes), len(tr.free), len(tr.parent))
	}
}

func TestTracker_IgnoresOwnAndRequestlessAlerts(t *testing.T) {
	tr := NewTracker(Options{})
	al := alert{rule: "r", user: "a", sev: detect.SeverityHigh}.build()
	own := al
	own.Rule = Rule
	none := al
	none.AuditIDs = nil
	for _, a := range []detect.Alert{own, none} {
		if _, ok := tr.Observe(a); ok {
			t.Errorf("%s alert changed an incident", a.Rule)
		}
	}
	if n := len(tr.Incidents()); n != 0 {
		t.Errorf("%d incidents", n)
	}
}

func TestTracker_CredentialIDs(t *testing.T) {
	tr := NewTracker(Options{})
	al := alert{rule: "r", user: "system:serviceaccount:ci:deployer", sev: detect.SeverityLow}.build()
	al.User.Extra = map[string][]string{CredentialIDKey: {"JTI=a84d435f"}}
	tr.Observe(al)
	id := tr.Incidents()[0].Identities[0]
	if id.Kind != "serviceaccount" || !slices.Equal(id.Credentials, []string{"JTI=a84d435f"}) {
		t.Errorf("identity %+v", id)
	}
}

func TestRecentEvents_Bounded(t *testing.T) {
	r := &recentEvents{gen: 2, cur: map[string]auditRef{}, prev: map[string]auditRef{}}
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		r.put(id, auditRef{identity: id})
	}
	for id, want := range map[string]bool{"a": false, "b": false, "c": true, "d": true, "e": true} {
		if _, ok := r.get(id); ok != want {
			t.Errorf("get(%s) found %v, want %v", id, ok, want)
		}
	}
	if n := len(r.cur) + len(r.prev); n > 2*r.gen {
		t.Errorf("%d keys kept, bound %d", n, 2*r.gen)
	}
}

func TestIncident_JSONRoundTrip(t *testing.T) {
	tr := NewTracker(Options{})
	tr.Observe(alert{rule: "bind", user: "mallory", verb: "create", resource: "rolebindings", ns: "prod", name: "x", code: 201,
		sev: detect.SeverityCritical, tags: bindTags}.build())
	want := tr.Incidents()
	data, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var got []Incident
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\ngot  %+v\nwant %+v", got, want)
	}
}

// When an announced incident absorbs an older one that never was, it keeps
// the id the sinks know, and the merge is an escalation only if it raises
// the level.
func TestTracker_MergeKeepsTheAnnouncedID(t *testing.T) {
	tr := NewTracker(Options{})
	tr.Observe(alert{rule: "forbidden", user: "sa", verb: "list", resource: "pods", sev: detect.SeverityLow, tags: probe, m: 0, auditIDs: []string{"u0"}}.build())
	opened, ok := tr.Observe(alert{rule: "bind", user: "admin", verb: "create", resource: "clusterrolebindings", code: 201,
		sev: detect.SeverityCritical, tags: bindTags, m: 1, auditIDs: []string{"b1"}}.build())
	if !ok || opened.Kind != Opened {
		t.Fatalf("admin's incident: %v %v", opened.Kind, ok)
	}
	// sa reads a secret with the rights bound: a correlation alert links
	// it to admin, and credential access is a new stage.
	c, ok := tr.Observe(alert{rule: "grant-then-use", user: "sa", verb: "list", resource: "secrets", sev: detect.SeverityCritical,
		tags: []string{"attack.credential-access"}, m: 2, auditIDs: []string{"b1", "u2"}}.build())
	if !ok || c.Kind != Escalated || c.Incident.ID != opened.Incident.ID {
		t.Fatalf("merge: change %v %v, id %s, want escalated %s", c.Kind, ok, c.Incident.ID, opened.Incident.ID)
	}
	// The same again raises nothing new.
	if c, ok := tr.Observe(alert{rule: "grant-then-use", user: "sa", verb: "get", resource: "secrets", sev: detect.SeverityCritical,
		tags: []string{"attack.credential-access"}, m: 3, auditIDs: []string{"b1", "u3"}}.build()); ok {
		t.Errorf("no new level, but %s", c.Kind)
	}
}
