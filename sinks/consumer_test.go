package sinks_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/sinks"
	"github.com/vigil-k8s/vigil/sinks/file"
)

// collector is a consumer that keeps what it is sent.
type collector struct {
	mu     sync.Mutex
	alerts []detect.Alert
}

func (c *collector) Send(_ context.Context, alerts ...detect.Alert) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.alerts = append(c.alerts, alerts...)
	return false, nil
}

func (c *collector) String() string { return "collector" }

func (c *collector) rules() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, a := range c.alerts {
		out = append(out, a.Rule)
	}
	return out
}

// TestWithConsumer: a consumer reads every alert from the durable stream,
// whatever the sinks' filters and routes, and cannot take a sink's name.
func TestWithConsumer(t *testing.T) {
	_, js := startJetStream(t, t.TempDir())
	out := filepath.Join(t.TempDir(), "out.jsonl")
	cfg := sinks.Config{
		Sinks:  []sinks.SinkConfig{{Name: "out", Type: sinks.TypeFile, Filter: sinks.Filter{MinSeverity: detect.SeverityHigh}, Settings: &file.Config{Path: out}}},
		Routes: []sinks.RouteConfig{{Namespaces: []string{"team-a"}, Sinks: []string{"out"}}, {Default: true}},
	}
	c := &collector{}
	d, err := sinks.Build(t.Context(), cfg, sinks.WithDurable(js, sinks.DurableOptions{}), sinks.WithConsumer("respond", c))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		rule string
		sev  detect.Severity
		ns   string
	}{{"a", detect.SeverityLow, "team-a"}, {"b", detect.SeverityHigh, "team-b"}, {"c", detect.SeverityHigh, "team-a"}} {
		al := detect.Alert{Rule: a.rule, Severity: a.sev, ObjectRef: &ingest.ObjectRef{Namespace: a.ns}, Fingerprint: a.rule + "0000"}
		if err := d.Dispatch(t.Context(), al); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.WaitDelivered(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.rules(), ","); got != "a,b,c" {
		t.Errorf("consumer got %s, want a,b,c", got)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := sinks.Build(t.Context(), cfg, sinks.WithConsumer("out", c)); err == nil || !strings.Contains(err.Error(), `consumer name "out"`) {
		t.Errorf("a consumer named like a sink: %v", err)
	}
}
