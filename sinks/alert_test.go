package sinks_test

import (
	"encoding/json"
	"flag"
	"testing"

	"github.com/vigil-k8s/vigil/sinks/sinktest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestAlertJSON pins the alert JSON every sink receives (the contract of
// detect.Alert, as the sinks' golden files assume it).
func TestAlertJSON(t *testing.T) {
	b, err := json.MarshalIndent(sinktest.Alerts()[0], "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	sinktest.Golden(t, "testdata/alert.golden.json", append(b, '\n'), *update)
}
