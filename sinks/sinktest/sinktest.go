// Package sinktest holds what the sink tests share: alerts built as the
// engine builds them (from the real apiserver captures) and golden files.
package sinktest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic("BUG: bad test time " + s)
	}
	return t
}

// Alerts returns three alerts modelled on the real captures: an exec that
// reads a service-account token, a secret enumeration window and a
// forbidden burst. They are fresh values on every call.
func Alerts() []detect.Alert {
	exec := detect.Alert{
		Rule: "pod-exec", Title: "Command executed in a pod", Severity: detect.SeverityHigh,
		Tags:        []string{"attack.execution", "T1609"},
		Description: "Someone ran a command inside a running container.",
		Message:     "kubernetes-admin ran `cat /var/run/secrets/kubernetes.io/serviceaccount/token` in team-a/web",
		Time:        ts("2026-11-22T06:27:38.401924Z"), Cluster: "lab",
		User:      ingest.UserInfo{Username: "kubernetes-admin", Groups: []string{"kubeadm:cluster-admins", "system:authenticated"}},
		SourceIPs: []string{"127.0.0.1"}, UserAgent: "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0",
		Verb:         "get",
		ObjectRef:    &ingest.ObjectRef{Resource: "pods", Namespace: "team-a", Name: "web", APIVersion: "v1", Subresource: "exec"},
		RequestURI:   "/api/v1/namespaces/team-a/pods/web/exec?command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=nginx&stderr=true&stdout=true",
		ResponseCode: 101,
		ExecCommand:  "cat /var/run/secrets/kubernetes.io/serviceaccount/token",
		AuditIDs:     []string{"4a6fbd43-4c4c-4f7b-a1a7-0d53b1a1c2e1"},
		GroupKey:     "4a6fbd43-4c4c-4f7b-a1a7-0d53b1a1c2e1", Count: 1,
		FirstTime: ts("2026-11-22T06:27:38.401924Z"), LastTime: ts("2026-11-22T06:27:38.401924Z"),
	}
	exec.Fingerprint = detect.Fingerprint(exec.Rule, exec.GroupKey, exec.FirstTime)
	enum := detect.Alert{
		Rule: "secret-enumeration", Title: "Secrets enumerated", Severity: detect.SeverityCritical,
		Tags:    []string{"attack.credential-access", "T1552.007"},
		Message: "system:serviceaccount:ci:secret-reader read 6 distinct secrets in 10s",
		Time:    ts("2026-11-22T06:27:12.118302Z"), Cluster: "lab",
		User: ingest.UserInfo{Username: "system:serviceaccount:ci:secret-reader",
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"}},
		SourceIPs: []string{"127.0.0.1"}, UserAgent: "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0",
		Verb: "get", ObjectRef: &ingest.ObjectRef{Resource: "secrets", Namespace: "prod", Name: "stripe-live-key", APIVersion: "v1"},
		RequestURI: "/api/v1/namespaces/prod/secrets/stripe-live-key", ResponseCode: 200,
		AuditIDs: []string{"0b1e2a55-0f59-4a39-9b0e-6a1c0b8a3d01", "5d7c3b7e-93b5-4a7c-8f2e-2f6f0e9f6a12",
			"a4f0e6c1-1d2b-4e5f-8a9b-0c1d2e3f4a5b", "c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f",
			"e1f2a3b4-c5d6-4e7f-8a9b-c0d1e2f3a4b5", "f0e1d2c3-b4a5-4968-8776-a5b4c3d2e1f0"},
		GroupKey: "system:serviceaccount:ci:secret-reader", Count: 6,
		Distinct:  []string{"prod/db-credentials", "prod/api-key", "prod/stripe-live-key", "prod/prod-tls", "kube-system/cloud-provider-creds", "ci/regcred"},
		FirstTime: ts("2026-11-22T06:27:09.861145Z"), LastTime: ts("2026-11-22T06:27:12.118302Z"),
	}
	enum.Fingerprint = detect.Fingerprint(enum.Rule, enum.GroupKey, enum.FirstTime)
	burst := detect.Alert{
		Rule: "forbidden-burst", Title: "Burst of forbidden API requests", Severity: detect.SeverityMedium,
		Tags:      []string{"attack.discovery", "T1613"},
		Message:   "mallory got 30 forbidden responses in 1m",
		Time:      ts("2026-11-22T06:26:48.902119Z"),
		User:      ingest.UserInfo{Username: "mallory", Groups: []string{"developers", "system:authenticated"}},
		SourceIPs: []string{"127.0.0.1"}, UserAgent: "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0",
		Verb: "list", ObjectRef: &ingest.ObjectRef{Resource: "clusterrolebindings", APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1"},
		RequestURI: "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?limit=500", ResponseCode: 403,
		AuditIDs: []string{"11111111-2222-4333-8444-555555555555"}, GroupKey: "mallory", Count: 30,
		FirstTime: ts("2026-11-22T06:26:47.015530Z"), LastTime: ts("2026-11-22T06:26:48.902119Z"),
	}
	burst.Fingerprint = detect.Fingerprint(burst.Rule, burst.GroupKey, burst.FirstTime)
	return []detect.Alert{exec, enum, burst}
}

// Golden compares got with the file at path, or writes it when update is
// set (go test ./sinks/... -update).
func Golden(t testing.TB, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update if the change is intended)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
