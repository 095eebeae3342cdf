package respond

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

// TestResume_StartedRecord: a crash after the started record and the
// change, before the done record. The alert comes again; the action
// finishes with the state the first attempt saw, so undo restores that,
// not the state the crash left.
func TestResume_StartedRecord(t *testing.T) {
	e := needCluster(t)
	ns := e.namespace(t, "resume")
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "w"}}
	_, err := e.admin.Apps.Deployments(ns).Create(ctxT(), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "w"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(0)), Selector: sel,
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel.MatchLabels}, Spec: podSpec}}}, metav1.CreateOptions{})
	ok(t, err)
	al := alertOn("x", detect.SeverityHigh, "admin", ingest.ObjectRef{Resource: "deployments", APIGroup: "apps", Namespace: ns, Name: "w"}, time.Now())
	r, j := e.responder(t, "type: scale-to-zero", true)
	// What the first attempt wrote before it scaled 4 replicas to 0.
	before, _ := json.Marshal(scaleBefore{Kind: "Deployment", Name: "w", Replicas: 4})
	started := Record{ID: actionID(al.Fingerprint, "r", 0), Time: time.Now(), Action: "scale-to-zero", Mode: ModeEnforce,
		Status: StatusStarted, Target: Target{Kind: "Deployment", Namespace: ns, Name: "w"}, Before: before,
		Response: ResponseRef{Rule: "r"}, Alert: AlertRef{Rule: "x", Fingerprint: al.Fingerprint}}
	ok(t, j.Append(started))

	rec := handleOne(t, r, al)
	if rec.Status != StatusDone || string(rec.Before) != string(before) {
		t.Fatalf("resumed record %+v", rec)
	}
	if _, err := Undo(ctxT(), e.vigil, j, r.cfg, rec.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	d, err := e.admin.Apps.Deployments(ns).Get(ctxT(), "w", metav1.GetOptions{})
	ok(t, err)
	if *d.Spec.Replicas != 4 {
		t.Errorf("replicas after undo %d, want 4", *d.Spec.Replicas)
	}
}

// TestOutage_NothingLost: while the apiserver cannot be reached, Send asks
// for the alert again and records nothing; once it can, the action runs.
func TestOutage_NothingLost(t *testing.T) {
	e := needCluster(t)
	ns := e.namespace(t, "outage")
	createPod(t, e, ns, "web", nil)
	al := alertOn("pod-exec", detect.SeverityHigh, "admin", ingest.ObjectRef{Resource: "pods", Namespace: ns, Name: "web"}, time.Now())
	down, err := NewCluster(&rest.Config{Host: "https://127.0.0.1:1", Timeout: 2 * time.Second})
	ok(t, err)
	r, j := e.responder(t, "type: quarantine-pod", true)
	r.o.Cluster = down
	retry, err := r.Send(ctxT(), al)
	if !retry || err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("outage: retry %v, err %v", retry, err)
	}
	if _, seen := j.Lookup(actionID(al.Fingerprint, "r", 0)); seen {
		t.Fatal("a failed attempt was recorded")
	}
	r.o.Cluster = e.vigil
	if retry, err := r.Send(ctxT(), al); retry || err != nil {
		t.Fatalf("after the outage: retry %v, err %v", retry, err)
	}
	if rec, _ := j.Lookup(actionID(al.Fingerprint, "r", 0)); rec.Status != StatusDone {
		t.Errorf("record %+v, want done", rec)
	}
}

func TestSkipAndUndoErrors(t *testing.T) {
	e := needCluster(t)
	ns := e.namespace(t, "skips")
	createPod(t, e, ns, "bare", nil)
	_, err := e.admin.Core.Secrets(ns).Create(ctxT(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "plain"}}, metav1.CreateOptions{})
	ok(t, err)
	ctx := context.Background()
	for _, tc := range []struct {
		action string
		ref    ingest.ObjectRef
		want   string
	}{
		{"type: scale-to-zero", ingest.ObjectRef{Resource: "pods", Namespace: ns, Name: "bare"}, "has no controller to scale"},
		{"type: delete-token-secret", ingest.ObjectRef{Resource: "secrets", Namespace: ns, Name: "plain"}, "not a service account token"},
		{"type: quarantine-pod", ingest.ObjectRef{Resource: "pods", Namespace: ns, Name: "gone"}, "not found"},
		{"type: cordon-node", ingest.ObjectRef{Resource: "pods", Namespace: ns, Name: "bare"}, "is not on a node"},
	} {
		r, j := e.responder(t, tc.action, true)
		rec := handleOne(t, r, alertOn("x", detect.SeverityHigh, "admin", tc.ref, time.Now()))
		if rec.Status != StatusSkipped || !strings.Contains(rec.Detail, tc.want) {
			t.Errorf("%s: %s %q, want skipped %q", tc.action, rec.Status, rec.Detail, tc.want)
		}
		if _, err := Undo(ctx, e.vigil, j, r.cfg, rec.ID, time.Now()); err == nil || !strings.Contains(err.Error(), "only actions that were done") {
			t.Errorf("undo of a skipped action: %v", err)
		}
	}
	r, j := e.responder(t, "type: quarantine-pod", false)
	rec := handleOne(t, r, alertOn("x", detect.SeverityHigh, "admin", ingest.ObjectRef{Resource: "pods", Namespace: ns, Name: "bare"}, time.Now()))
	if _, err := Undo(ctx, e.vigil, j, r.cfg, rec.ID, time.Now()); err == nil || !strings.Contains(err.Error(), "was a dry-run") {
		t.Errorf("undo of a dry-run: %v", err)
	}
	if _, err := Undo(ctx, e.vigil, j, r.cfg, "nope", time.Now()); err == nil || !strings.Contains(err.Error(), "no action nope") {
		t.Errorf("undo of an unknown id: %v", err)
	}
}

// TestRBAC_Least: vigil bound to the RBAC of one action cannot do another
// action's work: the permissions are per action, and a refusal of the
// apiserver is recorded as failed, not retried.
func TestRBAC_Least(t *testing.T) {
	e := needCluster(t)
	ns := e.namespace(t, "least")
	createPod(t, e, ns, "web", nil)
	// A second identity, bound only to what cordon-node needs.
	ctx := context.Background()
	rbac, err := RBAC([]string{"cordon-node"}, ns, "narrow")
	ok(t, err)
	createSA(t, e, ns, "narrow")
	applyYAML(t, e, strings.ReplaceAll(string(rbac), RBACName, "narrow-"+ns))
	token, err := e.cp.ServiceAccountToken(ctx, ns, "narrow")
	ok(t, err)
	narrow, err := NewCluster(e.cp.RESTConfig(token))
	ok(t, err)
	r, j := e.responder(t, "type: quarantine-pod", true)
	r.o.Cluster = narrow
	rec := handleOne(t, r, alertOn("x", detect.SeverityHigh, "admin", ingest.ObjectRef{Resource: "pods", Namespace: ns, Name: "web"}, time.Now()))
	if rec.Status != StatusFailed || !strings.Contains(rec.Detail, "forbidden") {
		t.Errorf("record %+v, want failed: forbidden", rec)
	}
	if got, _ := j.Lookup(rec.ID); got.Status != StatusFailed {
		t.Errorf("journal has %+v", got)
	}
}
