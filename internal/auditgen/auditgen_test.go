package auditgen_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/auditgen"
	"github.com/vigil-k8s/vigil/policies"
)

const sample = 20_000

func TestGenerator_Deterministic(t *testing.T) {
	gen := func(seed uint64) []byte {
		var buf bytes.Buffer
		if _, err := auditgen.Write(&buf, auditgen.Options{Seed: seed}, 3000); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b, c := gen(1), gen(1), gen(2)
	if !bytes.Equal(a, b) {
		t.Error("the same seed gave different logs")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds gave the same log")
	}
	// Events and Write produce the same events.
	events := auditgen.Events(auditgen.Options{Seed: 1}, 3000)
	var joined []byte
	for _, e := range events {
		joined = append(append(joined, e...), '\n')
	}
	if !bytes.Equal(joined, a) {
		t.Error("Events and Write differ for the same options")
	}
}

func TestWrite_Count(t *testing.T) {
	for _, n := range []int{0, 1, 999} {
		var buf bytes.Buffer
		written, err := auditgen.Write(&buf, auditgen.Options{Seed: 3}, n)
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Count(buf.Bytes(), []byte("\n")); got != n || written != int64(buf.Len()) {
			t.Errorf("n=%d: %d lines, %d bytes reported of %d", n, got, written, buf.Len())
		}
	}
}

// TestGenerator_Shape checks that the log looks like a real one: valid
// audit events of about 1.2 KB, mostly in time order with late tails, and
// long-running requests logged at both stages.
func TestGenerator_Shape(t *testing.T) {
	start := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	// At 20 events/s the sample spans 17 minutes: watches (5 to 10
	// minutes) end within it.
	events := auditgen.Events(auditgen.Options{Seed: 42, Start: start, Rate: 20}, sample)
	var (
		d                    ingest.Decoder
		size                 int
		maxT                 time.Time
		behind, behindSecond int
		started              = map[string]bool{}
		completedStarted     int
		users, resources     = map[string]bool{}, map[string]bool{}
		codes, verbs         = map[int]int{}, map[string]int{}
	)
	for i, raw := range events {
		size += len(raw)
		if !json.Valid(raw) {
			t.Fatalf("event %d is not valid JSON: %.200s", i, raw)
		}
		ev, err := d.Decode(raw)
		if err != nil {
			t.Fatalf("event %d: %v: %.200s", i, err, raw)
		}
		if ev.StageTimestamp.Before(ev.RequestReceivedTimestamp) {
			t.Fatalf("event %d: stage time before received time", i)
		}
		if ev.Time().Before(start.Add(-time.Minute)) {
			t.Fatalf("event %d: received %v, long before the start %v", i, ev.Time(), start)
		}
		if ev.Time().Before(maxT) {
			behind++
			if maxT.Sub(ev.Time()) > time.Second {
				behindSecond++
			}
		} else {
			maxT = ev.Time()
		}
		switch ev.Stage {
		case "ResponseStarted":
			started[strings.Clone(ev.AuditID)] = true
		case "ResponseComplete":
			if started[ev.AuditID] {
				completedStarted++
			}
		default:
			t.Fatalf("event %d: stage %q", i, ev.Stage)
		}
		// Strings of a decoded event borrow the decoder's buffer.
		users[strings.Clone(ev.User.Username)] = true
		resources[strings.Clone(ev.ObjectRef.Resource)] = true
		codes[ev.ResponseStatus.Code]++
		verbs[strings.Clone(ev.Verb)]++
	}
	if avg := size / len(events); avg < 1000 || avg > 1400 {
		t.Errorf("average event size %d bytes, want about 1200", avg)
	}
	if behind == 0 || behindSecond == 0 || behindSecond > len(events)/50 {
		t.Errorf("%d events behind the newest, %d by more than 1s; want some of both, the latter under 2%%", behind, behindSecond)
	}
	if len(started) == 0 || completedStarted == 0 {
		t.Errorf("%d long-running requests started, %d completed: want both stages", len(started), completedStarted)
	}
	if len(users) < 30 || len(resources) < 25 {
		t.Errorf("%d users and %d resources: want a realistic variety", len(users), len(resources))
	}
	for _, c := range []int{200, 201, 101, 403, 404, 409, 401} {
		if codes[c] == 0 {
			t.Errorf("no response code %d in %d events", c, len(events))
		}
	}
	for _, v := range []string{"get", "list", "watch", "create", "update", "patch"} {
		if verbs[v] == 0 {
			t.Errorf("no %s requests", v)
		}
	}
}

// TestGenerator_RuleMix runs the built-in rules over the log: a few percent
// of the events raise alerts, from the kinds of activity the rules are
// for, every kind of planted activity is detected, and the control
// plane's own traffic raises none.
func TestGenerator_RuleMix(t *testing.T) {
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	const n = 60_000
	alerts, err := detect.Evaluate(rs, auditgen.Events(auditgen.Options{Seed: 42}, n))
	if err != nil {
		t.Fatal(err)
	}
	if pct := float64(len(alerts)) * 100 / n; pct < 0.5 || pct > 8 {
		t.Errorf("%d alerts for %d events (%.1f%%), want a few percent", len(alerts), n, pct)
	}
	byRule := map[string]int{}
	for _, a := range alerts {
		byRule[a.Rule]++
		if controlPlane(a.User.Username) {
			t.Errorf("alert %s for control-plane identity %s: %s", a.Rule, a.User.Username, a.Message)
		}
	}
	// What the mix plants (patterns.go), by the rule that must see it.
	for _, id := range []string{
		"secret-read", "secret-read-by-script-client", "serviceaccount-unusual-user-agent", // scriptedSecretRead
		"secret-list-all-namespaces",                               // adminListAllSecrets
		"secret-access-denied",                                     // personSecretDenied
		"pod-exec", "exec-credential-access", "exec-copy-from-pod", // personExec
		"pod-port-forward", "pod-attach", "pod-ephemeral-container", // personPortForward, personAttach, debugContainer
		"rbac-binding-changed", "rbac-cluster-admin-binding", // rbacBinding
		"rbac-self-review",                                  // selfReview
		"authentication-failed", "anonymous-request-denied", // badTokenRequest, scannerProbe
		"node-proxy-access", // nodeProxy
	} {
		if rs.Rule(id) == nil {
			t.Errorf("no built-in rule %s", id)
		} else if byRule[id] == 0 {
			t.Errorf("rule %s never fired; alerts by rule: %v", id, byRule)
		}
	}
}

// controlPlane reports the generator's control-plane identities: the API
// server, controller manager, scheduler, nodes and the controller
// manager's controllers. kube-proxy, CoreDNS and metrics-server run in
// kube-system but are not the control plane.
func controlPlane(u string) bool {
	switch {
	case strings.HasPrefix(u, "system:node:"), u == "system:kube-controller-manager", u == "system:kube-scheduler", u == "system:apiserver":
		return true
	case strings.HasPrefix(u, "system:serviceaccount:kube-system:"):
		name := strings.TrimPrefix(u, "system:serviceaccount:kube-system:")
		return strings.HasSuffix(name, "-controller") || name == "generic-garbage-collector" || name == "horizontal-pod-autoscaler"
	}
	return false
}

// TestBenignDay runs the built-in rules over a day of normal life: no
// alert of high or critical severity, at most one medium per 10,000
// events, each with a message that says what happened. VIGIL_BENIGN_EVENTS
// sets the size (the release check runs 130,000: the whole day).
func TestBenignDay(t *testing.T) {
	n := 30_000
	if s := os.Getenv("VIGIL_BENIGN_EVENTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("VIGIL_BENIGN_EVENTS=%q: %v", s, err)
		}
		n = v
	}
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	events := auditgen.Events(auditgen.Options{Seed: 11, Profile: auditgen.ProfileBenignDay}, n)
	alerts, err := detect.Evaluate(rs, events)
	if err != nil {
		t.Fatal(err)
	}
	bySeverity := map[detect.Severity]int{}
	byRule := map[string]int{}
	for _, a := range alerts {
		bySeverity[a.Severity]++
		byRule[a.Severity.String()+" "+a.Rule]++
		if a.Severity >= detect.SeverityMedium {
			t.Logf("%s %s: %s", a.Severity, a.Rule, a.Message)
		}
		if a.Severity >= detect.SeverityHigh {
			t.Errorf("%s alert on a benign day: %s: %s", a.Severity, a.Rule, a.Message)
		}
	}
	if limit := max(1, n/10_000); bySeverity[detect.SeverityMedium] > limit {
		t.Errorf("%d medium alerts in %d events, want at most %d", bySeverity[detect.SeverityMedium], n, limit)
	}
	t.Logf("%d events, %d alerts: %v", n, len(alerts), byRule)
}
