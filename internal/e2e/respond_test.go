package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/internal/e2e"
	"github.com/vigil-k8s/vigil/sinks/respond"
)

// responses are the rules of the scenario: the rogue binding is revoked,
// the privileged pod quarantined, the secret harvester disabled.
const responses = `
protect: {self: {namespace: vigil, service_account: vigil}}
rules:
  - name: rogue-bindings
    match: {rules: [rbac-cluster-admin-binding]}
    actions: [{type: revoke-binding, enforce: %[1]t}]
  - name: privileged-pods
    match: {rules: [pod-privileged]}
    actions: [{type: quarantine-pod, enforce: %[1]t}]
  - name: harvesters
    match: {rules: [secret-enumeration]}
    actions: [{type: disable-serviceaccount, enforce: %[1]t}]
`

// The scenario's objects; SFX makes each run's names its own.
const setupYAML = `
apiVersion: v1
kind: Namespace
metadata: {name: team-SFX}
---
apiVersion: v1
kind: Namespace
metadata: {name: ci-SFX}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: deployer, namespace: ci-SFX}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader, namespace: ci-SFX}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: secret-reader-SFX}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: reader-SFX}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secret-reader-SFX}
subjects: [{kind: ServiceAccount, name: reader, namespace: ci-SFX}]
`

const podYAML = `
apiVersion: v1
kind: Pod
metadata: {name: node-shell, namespace: team-SFX}
spec:
  hostPID: true
  containers:
  - name: shell
    image: registry.k8s.io/pause:3.10
    securityContext: {privileged: true}
`

var (
	vigilOnce  sync.Once
	vigilToken string
	vigilErr   error
)

// vigilIdentity creates vigil's service account bound to the RBAC that
// vigil respond rbac --all prints, and returns its token: the responses
// act as vigil would in a cluster.
func vigilIdentity(t *testing.T, cp *e2e.ControlPlane, admin string) string {
	t.Helper()
	vigilOnce.Do(func() {
		ctx := context.Background()
		rbac, err := respond.RBAC(respond.AllActions(), "vigil", "vigil")
		if err != nil {
			vigilErr = err
			return
		}
		objs := "apiVersion: v1\nkind: Namespace\nmetadata: {name: vigil}\n---\n" +
			"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: vigil, namespace: vigil}\n---\n" + string(rbac)
		if _, vigilErr = e2e.Kubectl(ctx, admin, []byte(objs), "apply", "-f", "-"); vigilErr != nil {
			return
		}
		vigilToken, vigilErr = cp.ServiceAccountToken(ctx, "vigil", "vigil")
	})
	if vigilErr != nil {
		t.Fatal(vigilErr)
	}
	return vigilToken
}

// scenario is one run of the attack, its names suffixed.
type scenario struct {
	t      *testing.T
	cp     *e2e.ControlPlane
	sfx    string
	admin  string
	reader string
}

func newScenario(t *testing.T, cp *e2e.ControlPlane, sfx string) *scenario {
	ctx := context.Background()
	s := &scenario{t: t, cp: cp, sfx: sfx}
	var err error
	if s.admin, err = cp.Kubeconfig("admin", e2e.AdminToken); err != nil {
		t.Fatal(err)
	}
	s.kubectl(s.admin, s.yaml(setupYAML), "apply", "-f", "-")
	var secrets strings.Builder
	for i := range 12 {
		fmt.Fprintf(&secrets, "apiVersion: v1\nkind: Secret\nmetadata: {name: s%d, namespace: team-%s}\nstringData: {password: p%d}\n---\n", i, sfx, i)
	}
	s.kubectl(s.admin, []byte(secrets.String()), "apply", "-f", "-")
	token, err := cp.ServiceAccountToken(ctx, "ci-"+sfx, "reader")
	if err != nil {
		t.Fatal(err)
	}
	if s.reader, err = cp.Kubeconfig("reader-"+sfx, token); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *scenario) yaml(y string) []byte { return []byte(strings.ReplaceAll(y, "SFX", s.sfx)) }

func (s *scenario) kubectl(kubeconfig string, stdin []byte, args ...string) string {
	s.t.Helper()
	out, err := e2e.Kubectl(context.Background(), kubeconfig, stdin, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// attack is what kubectl does as the attacker: a rogue cluster-admin
// binding for ci:deployer, a privileged pod, and ci:reader reading twelve
// secrets one by one.
func (s *scenario) attack() {
	s.kubectl(s.admin, nil, "create", "clusterrolebinding", "rogue-"+s.sfx, "--clusterrole=cluster-admin", "--serviceaccount=ci-"+s.sfx+":deployer")
	s.kubectl(s.admin, s.yaml(podYAML), "apply", "-f", "-")
	args := []string{"get", "secret", "-n", "team-" + s.sfx, "-o", "name"}
	for i := range 12 {
		args = append(args, fmt.Sprintf("s%d", i))
	}
	// With enforce, vigil may take the reader's rights before the last
	// reads: those are refused.
	if out, err := e2e.Kubectl(context.Background(), s.reader, nil, args...); err != nil && !strings.Contains(out, "Forbidden") {
		s.t.Fatal(err)
	}
}

// state is what the responses change, read as the admin.
func (s *scenario) state() string {
	get := func(args ...string) string {
		out, err := e2e.Kubectl(context.Background(), s.admin, nil, args...)
		if err != nil {
			if strings.Contains(out, "NotFound") {
				return "absent"
			}
			s.t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	return strings.Join([]string{
		"rogue=" + get("get", "clusterrolebinding", "rogue-"+s.sfx, "-o", "jsonpath={.subjects[*].name}"),
		"label=" + get("get", "pod", "node-shell", "-n", "team-"+s.sfx, "-o", `jsonpath={.metadata.labels.vigil\.dev/quarantine}`),
		"policy=" + get("get", "networkpolicy", respond.DefaultQuarantinePolicy, "-n", "team-"+s.sfx, "-o", "jsonpath={.spec.policyTypes}"),
		"reader=" + get("get", "clusterrolebinding", "reader-"+s.sfx, "-o", "jsonpath={.subjects[*].name}"),
		"disabled=" + get("get", "serviceaccount", "reader", "-n", "ci-"+s.sfx, "-o", `jsonpath={.metadata.annotations.vigil\.dev/disabled}`),
	}, " ")
}

// readerCanRead reports whether ci:reader may still read a secret.
func (s *scenario) readerCanRead() bool {
	out, err := e2e.Kubectl(context.Background(), s.reader, nil, "get", "secret", "s0", "-n", "team-"+s.sfx, "-o", "name")
	if err != nil && !strings.Contains(out, "Forbidden") {
		s.t.Fatal(err)
	}
	return err == nil
}

// waitRecords waits until the journal holds a final record of every action
// on the run's objects (their names carry sfx; a previous run's late
// events may reach this vigil) and returns the first of each action.
func waitRecords(t *testing.T, path, sfx string, actions ...string) map[string]respond.Record {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := map[string]respond.Record{}
		if recs, _, err := respond.ReadJournal(path); err == nil {
			for _, r := range recs {
				_, seen := got[r.Action]
				if !seen && r.Status != respond.StatusStarted && r.Undoes == "" && strings.Contains(r.Target.String(), "-"+sfx) {
					got[r.Action] = r
				}
			}
		}
		if len(got) >= len(actions) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("records after 90s: %v, want one for each of %v", got, actions)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// targets is the plan: action and target, the run's suffix left out.
func targets(recs map[string]respond.Record, sfx string) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Action+" "+strings.ReplaceAll(r.Target.String(), sfx, "X"))
	}
	slices.Sort(out)
	return out
}

// attacked is the state the attack leaves, before any response.
const attacked = "rogue=deployer label= policy=absent reader=reader disabled="

var wantPlan = []string{
	"disable-serviceaccount ServiceAccount ci-X/reader",
	"quarantine-pod Pod team-X/node-shell",
	"revoke-binding ClusterRoleBinding rogue-X",
}

// TestRespond_Enforce: against a real apiserver whose audit webhook feeds
// vigil, the attack is contained (the binding is gone, the pod
// quarantined, the harvester's rights taken), every action is a journal
// record and a sink event, and undo puts everything back.
func TestRespond_Enforce(t *testing.T) {
	cp := needControlPlane(t)
	s := newScenario(t, cp, "enf")
	token := vigilIdentity(t, cp, s.admin)
	v := startVigil(t, cp, token, fmt.Sprintf(responses, true))
	if !s.readerCanRead() {
		t.Fatal("the reader cannot read secrets before the attack")
	}

	started := time.Now()
	s.attack()
	recs := waitRecords(t, v.journal, s.sfx, "revoke-binding", "quarantine-pod", "disable-serviceaccount")
	t.Logf("contained %s after the attack", time.Since(started).Round(time.Millisecond))
	if got := targets(recs, s.sfx); !slices.Equal(got, wantPlan) {
		t.Fatalf("actions %v, want %v", got, wantPlan)
	}
	for _, r := range recs {
		if r.Mode != respond.ModeEnforce || r.Status != respond.StatusDone || len(r.Before) == 0 {
			t.Errorf("record %+v, want enforced, done, with before", r)
		}
	}
	if got, want := s.state(), `rogue=absent label=true policy=["Ingress","Egress"] reader= disabled=alert secret-enumeration `+
		recs["disable-serviceaccount"].Alert.Fingerprint; got != want {
		t.Errorf("after the responses:\n%s\nwant\n%s", got, want)
	}
	if s.readerCanRead() {
		t.Error("the reader still reads secrets")
	}
	waitEvents(t, v.alerts, recs)

	vc, err := respond.NewCluster(cp.RESTConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	j, err := respond.OpenJournal(v.journal, respond.JournalOptions{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, r := range recs {
		if _, err := respond.Undo(context.Background(), vc, j, respond.Config{}, r.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.state(); got != attacked {
		t.Errorf("after undo:\n%s\nwant\n%s", got, attacked)
	}
	if !s.readerCanRead() {
		t.Error("the reader cannot read secrets after undo")
	}
	// The binding undo recreated raises the alert again, as vigil's own
	// request: refused, not revoked again.
	waitFor(t, "the recreated binding's alert refused", func() bool {
		recs, _, _ := respond.ReadJournal(v.journal)
		return slices.ContainsFunc(recs, func(r respond.Record) bool {
			return r.Status == respond.StatusRefused && strings.Contains(r.Detail, "vigil's own request") &&
				r.Target.Name == "rogue-"+s.sfx
		})
	})
	if got := s.state(); got != attacked {
		t.Errorf("after the undone binding's alert:\n%s\nwant\n%s", got, attacked)
	}
}

// TestRespond_DryRun: the same attack with every action in dry-run: the
// same actions on the same targets are planned, and nothing changes.
func TestRespond_DryRun(t *testing.T) {
	cp := needControlPlane(t)
	s := newScenario(t, cp, "dry")
	token := vigilIdentity(t, cp, s.admin)
	v := startVigil(t, cp, token, fmt.Sprintf(responses, false))
	s.attack()
	recs := waitRecords(t, v.journal, s.sfx, "revoke-binding", "quarantine-pod", "disable-serviceaccount")
	if got := targets(recs, s.sfx); !slices.Equal(got, wantPlan) {
		t.Fatalf("actions %v, want %v", got, wantPlan)
	}
	for _, r := range recs {
		if r.Mode != respond.ModeDryRun || r.Status != respond.StatusPlanned || len(r.Before) == 0 {
			t.Errorf("record %+v, want a dry-run plan with before", r)
		}
	}
	waitEvents(t, v.alerts, recs)
	if got := s.state(); got != attacked {
		t.Errorf("dry-run changed the cluster:\n%s\nwant\n%s", got, attacked)
	}
	if !s.readerCanRead() {
		t.Error("dry-run took the reader's rights")
	}
}

// waitEvents waits until the file sink has the event of every record.
func waitEvents(t *testing.T, path string, recs map[string]respond.Record) {
	t.Helper()
	waitFor(t, "the records' events in the sink", func() bool {
		f, err := os.Open(path)
		if err != nil {
			return false
		}
		defer f.Close()
		seen := map[string]bool{}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var al detect.Alert
			if json.Unmarshal(sc.Bytes(), &al) == nil && strings.HasPrefix(al.Rule, respond.EventRulePrefix) {
				seen[al.GroupKey] = true
			}
		}
		for _, r := range recs {
			if !seen[r.ID] {
				return false
			}
		}
		return true
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
