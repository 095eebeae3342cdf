package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun_ConvertsEachProviderAndRefusesBadFlags(t *testing.T) {
	rec := filepath.Join("..", "..", "testdata", "real-apiserver", "run2", "audit.log.gz")
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--to", "gke", "--cluster", "c1", rec}, 0, `"cluster_name":"c1"`},
		{[]string{"--to", "aks", rec}, 0, `"category":"kube-audit"`},
		{[]string{"--to", "eks", rec}, 0, "\x1f\x8b"},
		{[]string{"--to", "azure", rec}, 2, ""},
		{[]string{rec}, 2, ""},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, strings.NewReader(""), &out, &errb); code != c.code || !strings.Contains(out.String(), c.out) {
			t.Errorf("%v: exit %d (%s), output %.80q", c.args, code, errb.String(), out.String())
		}
	}
}
