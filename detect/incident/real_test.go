package incident

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/logfile"
	"github.com/vigil-k8s/vigil/policies"
)

// replay runs the built-in rules over a log and tracks the alerts; it
// returns the incidents and the alerts the tracker's changes raised.
func replay(t *testing.T, path string) ([]Incident, []detect.Alert, int) {
	t.Helper()
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTracker(Options{Idle: 24 * time.Hour, MaxIncidents: 10_000})
	var changes []detect.Alert
	alerts := 0
	eng, err := detect.New(detect.Options{Rules: rs, Observe: func(_ *ingest.Record, ev *ingest.Event) { tr.Note(ev) }, Emit: func(al detect.Alert) error {
		alerts++
		if c, ok := tr.Observe(al); ok {
			changes = append(changes, c.Alert())
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := logfile.Open([]string{path}, nil, logfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	for {
		b, err := r.Read(t.Context())
		if perr := eng.Process(t.Context(), b); perr != nil {
			t.Fatal(perr)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := eng.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	return tr.Incidents(), changes, alerts
}

// In run5 the admin binds cluster-admin to the service account
// ci:deployer, which then reads kube-system secrets with a script; the
// admin also execs into pods and impersonates control-plane identities.
// The deployer's incident must come first and tell that whole story.
func TestTracker_RogueServiceAccount(t *testing.T) {
	const deployer = "system:serviceaccount:ci:deployer"
	incs, _, _ := replay(t, "../../testdata/real-apiserver/run5/audit.log.gz")
	if len(incs) < 2 {
		t.Fatalf("%d incidents", len(incs))
	}
	top := incs[0]
	var names []string
	for _, id := range top.Identities {
		names = append(names, id.Name)
	}
	if !slices.Contains(names, deployer) {
		t.Fatalf("top incident (score %d) holds %v, not %s; all: %v", top.Score, names, deployer, summaries(incs))
	}
	has := func(rule, user, object string) bool {
		for _, a := range top.Alerts {
			if a.Rule == rule && (user == "" || a.User == user) && (object == "" || a.Object == object) {
				return true
			}
		}
		return false
	}
	for _, c := range []struct{ what, rule, user, object string }{
		{"a binding to cluster-admin", "rbac-cluster-admin-binding", "kubernetes-admin", ""},
		{"the binding used", "grant-then-use", deployer, ""},
		{"the secret reads", "secret-read", deployer, "secrets in kube-system"},
		{"the scripted secret read", "secret-read-by-script-client", deployer, ""},
		{"the exec", "pod-exec", "", ""},
		{"the token theft from a pod", "exec-credential-access", "", ""},
	} {
		if !has(c.rule, c.user, c.object) {
			t.Errorf("top incident lacks %s (%s by %q on %q)", c.what, c.rule, c.user, c.object)
		}
	}
	// The binding of ci:deployer is the first event of its grant-then-use
	// alert, whether or not it raised an alert of its own.
	var binding bool
	for _, l := range top.Links {
		if l.Kind == "binding" && l.From == "kubernetes-admin" && l.To == deployer {
			binding = slices.ContainsFunc(top.Alerts, func(a AlertRef) bool {
				return a.Rule == "grant-then-use" && a.User == deployer && slices.Contains(a.AuditIDs, l.AuditID)
			})
		}
	}
	if !binding {
		t.Errorf("no binding link from kubernetes-admin to %s held by its grant-then-use alert: %+v", deployer, top.Links)
	}
	var stages []Stage
	for _, s := range top.Stages {
		stages = append(stages, s.Stage)
	}
	want := []Stage{StageDiscovery, StageCredentialAccess, StagePrivilegeEscalation, StagePersistence, StageImpact}
	if !slices.Equal(stages, want) {
		t.Errorf("stages %v, want %v", stages, want)
	}
	var tactics []string
	for _, tc := range top.Tactics {
		tactics = append(tactics, tc.Tactic)
	}
	for _, tc := range []string{"discovery", "credential-access", "privilege-escalation", "persistence", "execution"} {
		if !slices.Contains(tactics, tc) {
			t.Errorf("tactics %v lack %s", tactics, tc)
		}
	}
	// The secret enumeration of ci:secret-reader is its own story: its
	// token was minted by the admin at setup, a link below high severity.
	for _, inc := range incs[1:] {
		for _, id := range inc.Identities {
			if id.Name == deployer {
				t.Errorf("%s in two incidents", deployer)
			}
		}
	}
	if !slices.ContainsFunc(incs[1:], func(inc Incident) bool {
		return inc.Identities[0].Name == "system:serviceaccount:ci:secret-reader"
	}) {
		t.Errorf("no incident of its own for ci:secret-reader: %v", summaries(incs))
	}
}

func summaries(incs []Incident) []string {
	var out []string
	for _, inc := range incs {
		out = append(out, inc.Summary)
	}
	return out
}

// Live, the tracker raises an alert when an incident opens or escalates,
// not one per alert.
func TestTracker_LiveChangesRun5(t *testing.T) {
	_, changes, alerts := replay(t, "../../testdata/real-apiserver/run5/audit.log.gz")
	if len(changes) == 0 || len(changes) > alerts/5 {
		t.Fatalf("%d incident alerts for %d alerts", len(changes), alerts)
	}
	fps := map[string]bool{}
	level := map[string]detect.Severity{}
	for _, c := range changes {
		if c.Rule != Rule || fps[c.Fingerprint] || c.Message == "" || len(c.AuditIDs) == 0 {
			t.Errorf("incident alert %+v", c)
		}
		fps[c.Fingerprint] = true
		opened := slices.Contains(c.Tags, "incident.opened")
		if opened == (level[c.GroupKey] != 0) {
			t.Errorf("incident %s: %s after %s", c.GroupKey, c.Title, level[c.GroupKey])
		}
		if c.Severity < level[c.GroupKey] {
			t.Errorf("incident %s: severity fell from %s to %s", c.GroupKey, level[c.GroupKey], c.Severity)
		}
		level[c.GroupKey] = max(c.Severity, detect.SeverityInfo)
	}
	var critical bool
	for _, c := range changes {
		critical = critical || (c.Severity == detect.SeverityCritical && slices.Contains(c.Tags, "attack.privilege-escalation"))
	}
	if !critical {
		t.Error("no incident alert reached critical with privilege escalation")
	}
}
