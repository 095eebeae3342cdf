package main

import (
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/golden"
)

func TestTimeline_Golden(t *testing.T) {
	const run5 = "../../testdata/real-apiserver/run5/audit.log.gz"
	tests := []struct {
		name string
		args []string
	}{
		// The rogue service account: background reads, its refused exec,
		// its token for itself, the scripted kube-system secret read once
		// it was cluster-admin, and its CSRs.
		{"deployer", []string{"--user", "system:serviceaccount:ci:deployer"}},
		// Every actor in one namespace, users shown; a window alert marks
		// the events it names.
		{"namespace-team-b", []string{"--namespace", "team-b"}},
		// One token (the part after JTI=), as JSON lines.
		{"credential-json", []string{"--credential", "91b6062f-da3e-421d-82c8-74d6af5074e3", "--format", "json"}},
		// Impersonated requests belong to the impersonated user too.
		{"impersonated-mallory", []string{"--user", "mallory", "--since", "2026-11-22T06:28:39Z", "--until", "2026-11-22T06:28:40Z"}},
		{"nobody", []string{"--ip", "192.0.2.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"timeline", run5, "--no-builtin", "--rules", "testdata/timeline/rules.yaml"}, tt.args...)
			code, out, errs := vigil(t, "", args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			golden.Check(t, []byte(out), "testdata/timeline/"+tt.name+".golden")
		})
	}
}

func TestTimeline_Usage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no actor", []string{"timeline", "x.log"}, "say whose timeline"},
		{"bad format", []string{"timeline", "--user", "a", "--format", "yaml", "x.log"}, `--format "yaml"`},
		{"missing file", []string{"timeline", "--user", "a", "does-not-exist.log"}, "does-not-exist.log"},
		{"bad time", []string{"timeline", "--user", "a", "--since", "yesterday", "x.log"}, "--since"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := vigil(t, "", tt.args...)
			if code != exitUsage || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, errs, exitUsage, tt.want)
			}
		})
	}
}
