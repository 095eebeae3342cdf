package respond

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/sinks"
)

var t0 = time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)

// alertOn is an alert of rule by user about the object ref.
func alertOn(rule string, sev detect.Severity, user string, ref ingest.ObjectRef, at time.Time) detect.Alert {
	r := ref
	return detect.Alert{Rule: rule, Severity: sev, Title: rule, Message: rule + " by " + user, Time: at,
		User: ingest.UserInfo{Username: user}, ObjectRef: &r, AuditIDs: []string{"a1"}, GroupKey: "a1", Count: 1,
		FirstTime: at, LastTime: at, Fingerprint: detect.Fingerprint(rule, user+"/"+ref.Namespace+"/"+ref.Name, at)}
}

var (
	podRef  = ingest.ObjectRef{Resource: "pods", Namespace: "team-b", Name: "node-shell", APIVersion: "v1"}
	execRef = ingest.ObjectRef{Resource: "pods", Subresource: "exec", Namespace: "team-a", Name: "web", APIVersion: "v1"}
	crbRef  = ingest.ObjectRef{Resource: "clusterrolebindings", Name: "mallory-cluster-admin", APIGroup: groupRBAC, APIVersion: "v1"}
	rbRef   = ingest.ObjectRef{Resource: "rolebindings", Namespace: "kube-system", Name: "kube-system-default-admin", APIGroup: groupRBAC, APIVersion: "v1"}
	nodeRef = ingest.ObjectRef{Resource: "nodes", Subresource: "proxy", Name: "node-1", APIVersion: "v1"}
	secRef  = ingest.ObjectRef{Resource: "secrets", Namespace: "prod", Name: "db", APIVersion: "v1"}
)

// planner is a responder without a cluster, journaling to a temp file.
func planner(t *testing.T, cfgYAML string) (*Responder, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plan.jsonl")
	j, err := OpenJournal(path, JournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(mustDecode(t, cfgYAML), Options{Journal: j, DryRun: true, Clock: func(al *detect.Alert) time.Time { return al.Time }})
	if err != nil {
		t.Fatal(err)
	}
	r.Start(nil)
	t.Cleanup(func() { r.Close() })
	return r, path
}

func summary(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprintf("%s %s %s %s", r.Action, r.Mode, r.Status, r.Target))
	}
	return out
}

func TestPlan_TargetsFromAlerts(t *testing.T) {
	r, _ := planner(t, `
protect: {self: {namespace: vigil}}
max_actions_per_minute: 100
rules:
  - name: all
    match: {min_severity: low}
    actions:
      - {type: quarantine-pod, enforce: true}
      - {type: scale-to-zero}
      - {type: revoke-binding}
      - {type: revoke-binding, find: subject}
      - {type: delete-token-secret}
      - {type: disable-serviceaccount}
      - {type: cordon-node}
      - {type: annotate}
      - {type: webhook, url: "http://127.0.0.1:1/hook"}
`)
	for _, tc := range []struct {
		name string
		al   detect.Alert
		want []string
	}{
		{"privileged pod by admin", alertOn("pod-privileged", detect.SeverityHigh, "kubernetes-admin", podRef, t0), []string{
			"quarantine-pod dry-run planned Pod team-b/node-shell",
			"scale-to-zero dry-run planned Pod team-b/node-shell",
			"revoke-binding dry-run skipped (none)",
			"revoke-binding dry-run planned User kubernetes-admin",
			"delete-token-secret dry-run skipped (none)",
			"disable-serviceaccount dry-run skipped (none)",
			"cordon-node dry-run planned Pod team-b/node-shell",
			"annotate dry-run planned Pod team-b/node-shell",
			"webhook dry-run planned Pod team-b/node-shell",
		}},
		{"exec by a service account", alertOn("exec-credential-access", detect.SeverityHigh, "system:serviceaccount:ci:deployer", execRef, t0), []string{
			"quarantine-pod dry-run planned Pod team-a/web",
			"scale-to-zero dry-run planned Pod team-a/web",
			"revoke-binding dry-run skipped (none)",
			"revoke-binding dry-run planned ServiceAccount ci/deployer",
			"delete-token-secret dry-run planned ServiceAccount ci/deployer",
			"disable-serviceaccount dry-run planned ServiceAccount ci/deployer",
			"cordon-node dry-run planned Pod team-a/web",
			"annotate dry-run planned Pod team-a/web",
			"webhook dry-run planned Pod team-a/web",
		}},
		{"rogue binding", alertOn("rbac-cluster-admin-binding", detect.SeverityCritical, "kubernetes-admin", crbRef, t0), []string{
			"quarantine-pod dry-run skipped (none)",
			"scale-to-zero dry-run skipped (none)",
			"revoke-binding dry-run planned ClusterRoleBinding mallory-cluster-admin",
			"revoke-binding dry-run planned User kubernetes-admin",
			"delete-token-secret dry-run skipped (none)",
			"disable-serviceaccount dry-run skipped (none)",
			"cordon-node dry-run skipped (none)",
			"annotate dry-run planned ClusterRoleBinding mallory-cluster-admin",
			"webhook dry-run planned ClusterRoleBinding mallory-cluster-admin",
		}},
		{"binding in kube-system", alertOn("rbac-privileged-role-binding", detect.SeverityHigh, "kubernetes-admin", rbRef, t0), []string{
			"quarantine-pod dry-run skipped (none)",
			"scale-to-zero dry-run skipped (none)",
			"revoke-binding dry-run refused RoleBinding kube-system/kube-system-default-admin",
			"revoke-binding dry-run planned User kubernetes-admin",
			"delete-token-secret dry-run skipped (none)",
			"disable-serviceaccount dry-run skipped (none)",
			"cordon-node dry-run skipped (none)",
			"annotate dry-run refused RoleBinding kube-system/kube-system-default-admin",
			"webhook dry-run refused RoleBinding kube-system/kube-system-default-admin",
		}},
		{"stolen controller identity", alertOn("control-plane-identity-unexpected-client", detect.SeverityHigh, "system:kube-controller-manager", secRef, t0), []string{
			"quarantine-pod dry-run skipped (none)",
			"scale-to-zero dry-run skipped (none)",
			"revoke-binding dry-run skipped (none)",
			"revoke-binding dry-run refused User system:kube-controller-manager",
			"delete-token-secret dry-run planned Secret prod/db",
			"disable-serviceaccount dry-run skipped (none)",
			"cordon-node dry-run skipped (none)",
			"annotate dry-run planned Secret prod/db",
			"webhook dry-run planned Secret prod/db",
		}},
		{"node proxy", alertOn("node-proxy-access", detect.SeverityHigh, "system:serviceaccount:vigil:vigil-reader", nodeRef, t0), []string{
			"quarantine-pod dry-run skipped (none)",
			"scale-to-zero dry-run skipped (none)",
			"revoke-binding dry-run skipped (none)",
			"revoke-binding dry-run refused ServiceAccount vigil/vigil-reader",
			"delete-token-secret dry-run refused ServiceAccount vigil/vigil-reader",
			"disable-serviceaccount dry-run refused ServiceAccount vigil/vigil-reader",
			"cordon-node dry-run planned Node node-1",
			"annotate dry-run planned Node node-1",
			"webhook dry-run planned Node node-1",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Hours apart: no action repeats one of an earlier case.
			tc.al.Time = tc.al.Time.Add(time.Duration(len(tc.name)) * time.Hour)
			recs, err := r.Handle(context.Background(), tc.al)
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(recs); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			for _, rec := range recs {
				if rec.Alert.Fingerprint != tc.al.Fingerprint || rec.Alert.Rule != tc.al.Rule || rec.Reason == "" || rec.ID == "" {
					t.Errorf("record %+v does not name its alert", rec)
				}
				if rec.Status == StatusRefused || rec.Status == StatusSkipped {
					if rec.Detail == "" {
						t.Errorf("%s %s without a reason", rec.Action, rec.Status)
					}
				}
			}
		})
	}
}

func TestPlan_SelfAndEvents(t *testing.T) {
	r, _ := planner(t, `
protect: {self: {namespace: sec, service_account: watcher}}
rules:
  - name: r
    match: {rules: ["*"]}
    actions: [{type: quarantine-pod}]
`)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		al   detect.Alert
		want string
	}{
		{"vigil's own request", alertOn("pod-exec", detect.SeverityMedium, "system:serviceaccount:sec:watcher", execRef, t0),
			"quarantine-pod dry-run refused Pod team-a/web"},
		{"vigil's namespace", alertOn("pod-exec", detect.SeverityMedium, "admin",
			ingest.ObjectRef{Resource: "pods", Namespace: "sec", Name: "vigil-0"}, t0), "quarantine-pod dry-run refused Pod sec/vigil-0"},
		{"kube-system", alertOn("pod-exec", detect.SeverityMedium, "admin",
			ingest.ObjectRef{Resource: "pods", Namespace: "kube-system", Name: "etcd-0"}, t0), "quarantine-pod dry-run refused Pod kube-system/etcd-0"},
	} {
		recs, err := r.Handle(ctx, tc.al)
		if err != nil || len(recs) != 1 || summary(recs)[0] != tc.want {
			t.Errorf("%s: %v, %v; want %s", tc.name, summary(recs), err, tc.want)
		}
	}
	// Events of records come back on the alert stream: never acted on.
	ev := EventAlert(Record{ID: "x", Action: "quarantine-pod", Mode: ModeEnforce, Status: StatusDone,
		Target: Target{Kind: "Pod", Namespace: "team-a", Name: "web"}}, nil)
	if recs, err := r.Handle(ctx, ev); err != nil || len(recs) != 0 {
		t.Errorf("event alert handled: %v, %v", recs, err)
	}
}

func TestPlan_AllowKubeSystem(t *testing.T) {
	r, _ := planner(t, `
protect: {allow_kube_system: true}
rules: [{name: r, match: {rules: ["*"]}, actions: [{type: revoke-binding}]}]
`)
	recs, err := r.Handle(context.Background(), alertOn("x", detect.SeverityHigh, "admin", rbRef, t0))
	if err != nil || summary(recs)[0] != "revoke-binding dry-run planned RoleBinding kube-system/kube-system-default-admin" {
		t.Errorf("%v %v", summary(recs), err)
	}
}

func TestPlan_RateLimits(t *testing.T) {
	r, _ := planner(t, `
max_actions_per_minute: 3
rules:
  - name: r
    match: {rules: ["*"]}
    actions:
      - {type: annotate, rate_limit: {max: 2, per: 1m}}
      - {type: quarantine-pod}
`)
	ctx := context.Background()
	var got []string
	for i := range 4 {
		ref := podRef
		ref.Name = fmt.Sprintf("p%d", i)
		recs, err := r.Handle(ctx, alertOn("pod-privileged", detect.SeverityHigh, "admin", ref, t0.Add(time.Duration(i)*time.Second)))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, summary(recs)...)
	}
	// Minutes later the windows are empty again.
	recs, err := r.Handle(ctx, alertOn("pod-privileged", detect.SeverityHigh, "admin", podRef, t0.Add(5*time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, summary(recs)...)
	want := []string{
		"annotate dry-run planned Pod team-b/p0", "quarantine-pod dry-run planned Pod team-b/p0",
		"annotate dry-run planned Pod team-b/p1", "quarantine-pod dry-run rate-limited Pod team-b/p1",
		"annotate dry-run rate-limited Pod team-b/p2", "quarantine-pod dry-run rate-limited Pod team-b/p2",
		"annotate dry-run rate-limited Pod team-b/p3", "quarantine-pod dry-run rate-limited Pod team-b/p3",
		"annotate dry-run planned Pod team-b/node-shell", "quarantine-pod dry-run planned Pod team-b/node-shell",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPlan_RedeliveredAlertIsSkipped(t *testing.T) {
	cfg := `rules: [{name: r, match: {rules: ["*"]}, actions: [{type: quarantine-pod}, {type: annotate}]}]`
	r, path := planner(t, cfg)
	ctx := context.Background()
	al := alertOn("pod-privileged", detect.SeverityHigh, "admin", podRef, t0)
	first, err := r.Handle(ctx, al)
	if err != nil || len(first) != 2 {
		t.Fatalf("%v %v", first, err)
	}
	if again, err := r.Handle(ctx, al); err != nil || len(again) != 0 {
		t.Errorf("second delivery: %v %v", summary(again), err)
	}
	r.Close()
	// A new process reads the journal: the alert is still done.
	j, err := OpenJournal(path, JournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := New(mustDecode(t, cfg), Options{Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	r2.Start(nil)
	defer r2.Close()
	if again, err := r2.Handle(ctx, al); err != nil || len(again) != 0 {
		t.Errorf("after restart: %v %v", summary(again), err)
	}
	recs, bad, err := ReadJournal(path)
	if err != nil || len(bad) > 0 || len(recs) != 2 || recs[0].ID != first[0].ID {
		t.Errorf("journal: %v %v %v", recs, bad, err)
	}
}

func TestJournal_TornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	rec := Record{ID: "a", Action: "annotate", Status: StatusDone}
	b, _ := json.Marshal(rec)
	// A crash cut the last write short.
	if err := os.WriteFile(path, append(append(b, '\n'), `{"id":"b","act`...), 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(path, JournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Bad) != 1 || !strings.Contains(j.Bad[0], "j.jsonl:2: not a record") {
		t.Errorf("bad lines %v", j.Bad)
	}
	if err := j.Append(Record{ID: "c", Action: "annotate", Status: StatusDone}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	recs, bad, err := ReadJournal(path)
	if err != nil || len(recs) != 2 || recs[1].ID != "c" || len(bad) != 1 {
		t.Errorf("records %v, bad %v, %v", recs, bad, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %v, want 0600", st.Mode().Perm())
	}
}

// TestEvents_ThroughSinks sends records' events through a real dispatcher
// to a file sink.
func TestEvents_ThroughSinks(t *testing.T) {
	dir := t.TempDir()
	disp, err := sinks.Build(context.Background(), sinks.Config{Sinks: []sinks.SinkConfig{sinks.FileSink("out", filepath.Join(dir, "events.jsonl"))}})
	if err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(filepath.Join(dir, "j.jsonl"), JournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(mustDecode(t, `rules: [{name: r, match: {rules: ["*"]}, actions: [{type: revoke-binding, enforce: true}]}]`), Options{Journal: j, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Start(disp)
	recs, err := r.Handle(context.Background(), alertOn("rbac-cluster-admin-binding", detect.SeverityCritical, "admin", crbRef, t0))
	if err != nil || len(recs) != 1 {
		t.Fatalf("%v %v", recs, err)
	}
	if err := disp.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.Close()
	b, err := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var ev detect.Alert
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	// Replay plans (dry-run) whatever the config enforces.
	if ev.Rule != "response:revoke-binding" || ev.Severity != detect.SeverityInfo || ev.ObjectRef == nil ||
		ev.ObjectRef.Resource != "clusterrolebindings" || ev.ObjectRef.Name != "mallory-cluster-admin" ||
		ev.GroupKey != recs[0].ID || !strings.Contains(ev.Message, "planned (dry-run)") || len(ev.Fingerprint) != 32 {
		t.Errorf("event %+v", ev)
	}
}

// TestPlan_RepeatsMakeOneAction: the rules a privileged pod raises make
// one quarantine of it, until RepeatWindow has passed.
func TestPlan_RepeatsMakeOneAction(t *testing.T) {
	r, _ := planner(t, `rules: [{name: r, match: {rules: ["pod-*"]}, actions: [{type: quarantine-pod}, {type: webhook, url: "http://127.0.0.1:1/"}]}]`)
	var got []string
	for i, at := range []time.Time{t0, t0.Add(time.Second), t0.Add(2 * time.Second), t0.Add(RepeatWindow + time.Minute)} {
		recs, err := r.Handle(context.Background(), alertOn(fmt.Sprintf("pod-rule-%d", i), detect.SeverityHigh, "admin", podRef, at))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, summary(recs)...)
	}
	want := []string{
		"quarantine-pod dry-run planned Pod team-b/node-shell", "webhook dry-run planned Pod team-b/node-shell",
		"webhook dry-run planned Pod team-b/node-shell", "webhook dry-run planned Pod team-b/node-shell",
		"quarantine-pod dry-run planned Pod team-b/node-shell", "webhook dry-run planned Pod team-b/node-shell",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPlan_FromCredential: a pod's bound token used elsewhere points at
// the pod (and node) it was taken from.
func TestPlan_FromCredential(t *testing.T) {
	r, _ := planner(t, `
rules:
  - name: r
    match: {rules: ["*"]}
    actions: [{type: quarantine-pod, from: credential}, {type: scale-to-zero, from: credential}, {type: cordon-node, from: credential}]
`)
	al := alertOn("secret-enumeration", detect.SeverityHigh, "system:serviceaccount:shop:api", secRef, t0)
	al.User.Extra = map[string][]string{extraPodName: {"api-5d8f-abcde"}, extraNodeName: {"node-7"}}
	want := []string{"quarantine-pod dry-run planned Pod shop/api-5d8f-abcde", "scale-to-zero dry-run planned Pod shop/api-5d8f-abcde",
		"cordon-node dry-run planned Node node-7"}
	if recs, err := r.Handle(context.Background(), al); err != nil || strings.Join(summary(recs), "\n") != strings.Join(want, "\n") {
		t.Errorf("%v %v", summary(recs), err)
	}
	// A token requested by hand is bound to no pod.
	al = alertOn("secret-enumeration", detect.SeverityHigh, "system:serviceaccount:ci:deployer", secRef, t0)
	recs, err := r.Handle(context.Background(), al)
	if err != nil || len(recs) != 3 || recs[0].Status != StatusSkipped || !strings.Contains(recs[0].Detail, "not a token bound to a pod") {
		t.Errorf("%v %v", summary(recs), err)
	}
	if _, err := decode(t, `rules: [{name: r, match: {rules: [x]}, actions: [{type: cordon-node, from: pod}]}]`); err == nil ||
		!strings.Contains(err.Error(), `responses.rules[0].actions[0].from: "pod" is not object or credential`) {
		t.Errorf("bad from: %v", err)
	}
}
