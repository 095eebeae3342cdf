package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/e2e"
	"github.com/vigil-k8s/vigil/internal/golden"
	"github.com/vigil-k8s/vigil/sinks/respond"
)

// plannedActions are the actions testdata/responses.yaml plans for each
// capture of testdata/real-apiserver: "slice action status target", RUN
// standing for the run's name. Each attack slice gets its containment; the
// kube-system binding is refused; identities that are not service accounts
// get no service-account action.
var plannedActions = []string{
	"b_secret_reads delete-token-secret planned ServiceAccount ci/secret-reader",
	"b_secret_reads disable-serviceaccount planned ServiceAccount ci/secret-reader",
	"c_exec quarantine-pod planned Pod team-a/web",
	"d_privilege_bindings delete-token-secret skipped (none)",
	"d_privilege_bindings delete-token-secret skipped (none)",
	"d_privilege_bindings delete-token-secret skipped (none)",
	"d_privilege_bindings disable-serviceaccount skipped (none)",
	"d_privilege_bindings disable-serviceaccount skipped (none)",
	"d_privilege_bindings disable-serviceaccount skipped (none)",
	"d_privilege_bindings revoke-binding planned ClusterRoleBinding anonymous-view",
	"d_privilege_bindings revoke-binding planned ClusterRoleBinding ci-deployer-cluster-admin",
	"d_privilege_bindings revoke-binding planned ClusterRoleBinding mallory-cluster-admin",
	"d_privilege_bindings revoke-binding planned ClusterRoleBinding unauthenticated-admin",
	"d_privilege_bindings revoke-binding planned User mallory",
	"d_privilege_bindings revoke-binding planned User system:anonymous",
	"d_privilege_bindings revoke-binding refused RoleBinding kube-system/kube-system-default-admin",
	"d_privilege_bindings webhook planned (none)",
	"d_privilege_bindings webhook planned (none)",
	"d_privilege_bindings webhook planned (none)",
	"d_privilege_bindings webhook planned ClusterRoleBinding anonymous-view",
	"d_privilege_bindings webhook planned ClusterRoleBinding ci-deployer-cluster-admin",
	"d_privilege_bindings webhook planned ClusterRoleBinding mallory-cluster-admin",
	"d_privilege_bindings webhook planned ClusterRoleBinding unauthenticated-admin",
	"d_privilege_bindings webhook planned ClusterRoleBinding unauthenticated-admin",
	"e1_privileged_pod quarantine-pod planned Pod team-b/hostnet-debug",
	"e1_privileged_pod quarantine-pod planned Pod team-b/node-shell",
	"e1_privileged_pod scale-to-zero planned Pod team-b/hostnet-debug",
	"e1_privileged_pod scale-to-zero planned Pod team-b/node-shell",
	"e6_anonymous delete-token-secret planned ServiceAccount ci/deployer",
	"e6_anonymous disable-serviceaccount planned ServiceAccount ci/deployer",
	"e6_anonymous revoke-binding planned ServiceAccount ci/deployer",
	"e6_anonymous webhook planned (none)",
	"e7_csr annotate planned CertificateSigningRequest fake-kcm-RUN",
}

// TestReplay_ActionsOutput replays the captures with the example responses:
// every action is planned (dry-run, no cluster) on the expected target,
// and the setup, the benign slice and the background plan nothing.
func TestReplay_ActionsOutput(t *testing.T) {
	for _, run := range []string{"run5", "run2"} {
		t.Run(run, func(t *testing.T) {
			dir := filepath.Join("..", "..", "testdata", "real-apiserver", run)
			out := filepath.Join(t.TempDir(), "actions.jsonl")
			code, _, stderr := vigil(t, "", "replay", "-q", "--config", filepath.Join("testdata", "responses.yaml"),
				"--actions-output", out, "-o", os.DevNull, filepath.Join(dir, "audit.log.gz"))
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			recs, bad, err := respond.ReadJournal(out)
			if err != nil || len(bad) > 0 {
				t.Fatalf("%v %v", bad, err)
			}
			timeline := readTimeline(t, filepath.Join(dir, "timeline.tsv"))
			var got []string
			for _, r := range recs {
				s := sliceOf(timeline, r.Alert.Time)
				if s == "setup" || s == "f_benign" || s == "background" {
					t.Errorf("action in %s: %+v", s, r)
				}
				if r.Mode != respond.ModeDryRun || r.ID == "" || r.Reason == "" || r.Alert.Fingerprint == "" {
					t.Errorf("record %+v", r)
				}
				got = append(got, strings.ReplaceAll(fmt.Sprintf("%s %s %s %s", s, r.Action, r.Status, r.Target), run, "RUN"))
			}
			slices.Sort(got)
			if strings.Join(got, "\n") != strings.Join(plannedActions, "\n") {
				t.Errorf("planned:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(plannedActions, "\n"))
			}
		})
	}
}

func TestReplay_ActionsOutputNeedsResponses(t *testing.T) {
	code, _, stderr := vigil(t, "", "replay", "--actions-output", filepath.Join(t.TempDir(), "a.jsonl"), "-o", os.DevNull,
		filepath.Join("..", "..", "testdata", "real-apiserver", "run5", "audit.log.gz"))
	if code != exitUsage || !strings.Contains(stderr, "--actions-output: the config has no responses rules") {
		t.Errorf("exit %d: %s", code, stderr)
	}
}

// TestRespondRBAC_Current: deploy/rbac-respond.yaml is what vigil respond
// rbac --all prints (go test -update rewrites it).
func TestRespondRBAC_Current(t *testing.T) {
	code, out, stderr := vigil(t, "", "respond", "rbac", "--all")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	golden.Check(t, []byte(out), filepath.Join("..", "..", "deploy", "rbac-respond.yaml"))
}

func TestRespondRBAC(t *testing.T) {
	cfg := filepath.Join("testdata", "responses.yaml")
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		want, nope []string
	}{
		{"enabled actions", []string{"--config", cfg, "--namespace", "sec", "--service-account", "responder"}, 0,
			[]string{"- bind", "- networkpolicies", "- deployments/scale", "name: responder\n  namespace: sec",
				"quarantine-pod, scale-to-zero, revoke-binding, delete-token-secret, disable-serviceaccount, annotate, webhook."},
			[]string{"- nodes"}},
		{"no responses", nil, exitUsage, []string{"the config has no responses rules"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := vigil(t, "", append([]string{"respond", "rbac"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(out+stderr, w) {
					t.Errorf("output lacks %q:\n%s%s", w, out, stderr)
				}
			}
			for _, n := range tc.nope {
				if strings.Contains(out, n) {
					t.Errorf("output has %q:\n%s", n, out)
				}
			}
		})
	}
}

func TestRespond_ConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, config, want string }{
		{"misspelt rule", "responses:\n  rules: [{name: r, match: {rules: [rbac-cluster-admin-bindings]}, actions: [{type: annotate}]}]\n",
			`responses.rules[0].match.rules[0]: "rbac-cluster-admin-bindings" matches no enabled rule`},
		{"unknown action", "responses:\n  rules: [{name: r, match: {rules: [pod-exec]}, actions: [{type: kill-pod}]}]\n",
			`responses.rules[0].actions[0].type: unknown action "kill-pod"`},
		{"unknown key", "responses:\n  protect: {namespace: [x]}\n", "responses.protect.namespace: unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := vigil(t, "", "rules", "check", "--config", path)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("rules check: exit %d: %s\nwant %s", code, stderr, tc.want)
			}
		})
	}
}

// TestRespondUndo_CLI: vigil respond list shows the journal, vigil respond
// undo puts the state back against a real apiserver and sends the undo's
// event to the config's sinks, once.
func TestRespondUndo_CLI(t *testing.T) {
	if _, _, skip := e2e.Binaries(); skip != "" {
		t.Skip(skip)
	}
	ctx := context.Background()
	dir := t.TempDir()
	cp, err := e2e.Start(ctx, e2e.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	admin, err := respond.NewCluster(cp.RESTConfig(e2e.AdminToken))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}}}
	if _, err := admin.Core.Pods("team-a").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "vigil.yaml")
	events := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(config, fmt.Appendf(nil, `
sinks: [{name: events, type: file, path: %q}]
responses:
  rules: [{name: pods, match: {rules: [pod-exec]}, actions: [{type: quarantine-pod, enforce: true}]}]
`, events), 0o600); err != nil {
		t.Fatal(err)
	}
	// What vigil serve does with an alert.
	cfg, err := loadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfg.responseConfig()
	if err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(dir, "data", "responses.jsonl")
	j, err := respond.OpenJournal(journal, respond.JournalOptions{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := respond.New(rc, respond.Options{Cluster: admin, Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	r.Start(nil)
	now := time.Now()
	recs, err := r.Handle(ctx, detect.Alert{Rule: "pod-exec", Severity: detect.SeverityMedium, Time: now,
		User:        ingest.UserInfo{Username: "mallory"},
		ObjectRef:   &ingest.ObjectRef{Resource: "pods", Subresource: "exec", Namespace: "team-a", Name: "web"},
		Fingerprint: detect.Fingerprint("pod-exec", "a1", now)})
	r.Close()
	if err != nil || len(recs) != 1 || recs[0].Status != respond.StatusDone {
		t.Fatalf("%+v %v", recs, err)
	}
	id := recs[0].ID
	label := func() string {
		p, err := admin.Core.Pods("team-a").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Labels[respond.DefaultQuarantineLabel]
	}
	if label() != "true" {
		t.Fatal("the pod is not quarantined")
	}

	code, out, stderr := vigil(t, "", "respond", "list", "--data-dir", filepath.Join(dir, "data"))
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "quarantine-pod  enforce  done    Pod team-a/web  pod-exec") {
		t.Fatalf("list: exit %d: %s%s", code, out, stderr)
	}
	kubeconfig, err := cp.Kubeconfig("admin", e2e.AdminToken)
	if err != nil {
		t.Fatal(err)
	}
	undo := []string{"respond", "undo", id, "--config", config, "--journal", journal, "--kubeconfig", kubeconfig}
	code, out, stderr = vigil(t, "", undo...)
	if code != 0 || !strings.Contains(out, id+": quarantine-pod Pod team-a/web: removed label vigil.dev/quarantine; deleted NetworkPolicy vigil-quarantine") {
		t.Fatalf("undo: exit %d: %s%s", code, out, stderr)
	}
	if label() != "" {
		t.Error("the pod is still labelled")
	}
	ev, err := os.ReadFile(events)
	if err != nil || !strings.Contains(string(ev), `"rule":"response:quarantine-pod"`) || !strings.Contains(string(ev), "undone") {
		t.Errorf("undo event: %s %v", ev, err)
	}
	code, _, stderr = vigil(t, "", undo...)
	if code != exitRuntime || !strings.Contains(stderr, "action "+id+" was undone") {
		t.Errorf("second undo: exit %d: %s", code, stderr)
	}
}
