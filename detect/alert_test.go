package detect

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/golden"
)

// TestAlert_JSON pins the alert JSON contract (docs/alerts.md) for a
// single-event rule and a window rule.
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
	alerts, err := Evaluate(rs, events)
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 2 {
		t.Fatalf("got %d alerts, want exec and burst: %+v", len(alerts), alerts)
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
	if exe.ExecCommand != "cat /etc/shadow" || exe.Fingerprint != Fingerprint("exec", "e1", t0) || exe.Count != 1 {
		t.Errorf("exec alert: command %q fingerprint %s count %d", exe.ExecCommand, exe.Fingerprint, exe.Count)
	}
	burst := alerts[1]
	if burst.GroupKey != "eve" || burst.Count != 3 || !burst.FirstTime.Equal(t0) || !burst.LastTime.Equal(t0.Add(2*time.Second)) || len(burst.AuditIDs) != 3 {
		t.Errorf("burst alert: %+v", burst)
	}
}
