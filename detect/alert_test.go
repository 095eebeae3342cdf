package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/golden"
)

// TestAlert_JSON pins the alert JSON contract (docs/alerts.md) for a
// single-event rule, a window rule, and a single-event alert that follows
// suppressed ones.
func TestAlert_JSON(t *testing.T) {
	rs := compileTestRules(t, windowRules+`
- id: exec
  title: Command executed in a pod
  description: Someone ran a command in a container.
  severity: medium
  tags: [T1609, attack.execution]
  audit: {level: Metadata, resources: [{group: "", resources: [pods/exec]}]}
  match: objectRef.subresource == "exec"
  output: '{{ .user.username }} ran "{{ .execCommand }}" in {{ .objectRef.namespace }}/{{ .objectRef.name }}'
`)
	exec := ev("e1", 0, "admin", "get", "pods", 101,
		"objectRef", `{"resource":"pods","subresource":"exec","namespace":"team-a","name":"web","apiVersion":"v1"}`,
		"requestURI", "/api/v1/namespaces/team-a/pods/web/exec?command=cat&command=%2Fetc%2Fshadow&container=nginx&stdout=true",
		"sourceIPs", `["10.0.0.7"]`, "userAgent", "kubectl/v1.33.1",
		"impersonatedUser", `{"username":"mallory","groups":["system:masters"]}`)
	var events [][]byte
	events = append(events, exec)
	for i, id := range []string{"f1", "f2", "f3"} {
		events = append(events, ev(id, float64(i), "eve", "list", "pods", 403))
	}
	// The same exec a minute later is suppressed; eleven minutes later it
	// alerts again, carrying the count.
	for i, sec := range []float64{60, 660} {
		events = append(events, ev(fmt.Sprintf("e%d", i+2), sec, "admin", "get", "pods", 101,
			"objectRef", `{"resource":"pods","subresource":"exec","namespace":"team-a","name":"web","apiVersion":"v1"}`,
			"requestURI", "/api/v1/namespaces/team-a/pods/web/exec?command=cat&command=%2Fetc%2Fshadow&container=nginx&stdout=true",
			"sourceIPs", `["10.0.0.7"]`, "userAgent", "kubectl/v1.33.1",
			"impersonatedUser", `{"username":"mallory","groups":["system:masters"]}`))
	}
	alerts, err := Evaluate(rs, events)
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 3 {
		t.Fatalf("got %d alerts, want exec, burst and exec again: %+v", len(alerts), alerts)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	for _, a := range alerts {
		if err := enc.Encode(a); err != nil {
			t.Fatal(err)
		}
	}
	golden.Check(t, buf.Bytes(), filepath.Join("testdata", "alerts.golden.json"))

	exe := alerts[0]
	if exe.ExecCommand != "cat /etc/shadow" || exe.Count != 1 {
		t.Errorf("exec alert: command %q count %d", exe.ExecCommand, exe.Count)
	}
	burst := alerts[1]
	if burst.GroupKey != "eve" || burst.Count != 3 || !burst.FirstTime.Equal(t0) || !burst.LastTime.Equal(t0.Add(2*time.Second)) || len(burst.AuditIDs) != 3 {
		t.Errorf("burst alert: %+v", burst)
	}
	again := alerts[2]
	if again.Suppressed != 1 || again.SuppressedSince == nil || !again.SuppressedSince.Equal(t0.Add(time.Minute)) {
		t.Errorf("exec after the storm: suppressed %d since %v", again.Suppressed, again.SuppressedSince)
	}
	// A suppressing rule's alert stands for its period: the next period's
	// is another alert.
	if exe.Fingerprint == again.Fingerprint {
		t.Errorf("exec alerts of two periods share the fingerprint %s", exe.Fingerprint)
	}
}
