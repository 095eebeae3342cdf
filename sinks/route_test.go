package sinks_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/sinks"
	"github.com/vigil-k8s/vigil/sinks/file"
)

// recorder wraps every sink and records which alerts reach which sink.
type recorder struct {
	mu  sync.Mutex
	got map[string][]string // sink name -> rule ids
}

type recSink struct {
	sinks.Sink
	name string
	r    *recorder
}

func (s recSink) Send(ctx context.Context, alerts ...detect.Alert) (bool, error) {
	s.r.mu.Lock()
	for _, a := range alerts {
		s.r.got[s.name] = append(s.r.got[s.name], a.Rule)
	}
	s.r.mu.Unlock()
	return false, nil
}

func TestRouting(t *testing.T) {
	cfg, err := decode(t, `
sinks:
  - {name: siem, type: stdout}
  - {name: team-a, type: stdout}
  - {name: prod-pager, type: stdout, min_severity: high}
  - {name: sec, type: stdout, include: {tags: ["attack.credential-*"], rules: [pod-exec]}}
  - {name: quiet, type: stdout, exclude: {rules: ["noisy-*"], tags: [benign]}}
routes:
  - {namespaces: ["team-a", "team-a-*"], sinks: [team-a]}
  - {namespaces: ["prod"], sinks: [prod-pager], continue: true}
  - {namespaces: ["prod*"], sinks: [team-a]}
  - {default: true, sinks: [sec]}
`)
	if err != nil {
		t.Fatal(err)
	}
	alert := func(rule, ns string, sev detect.Severity, tags ...string) detect.Alert {
		a := detect.Alert{Rule: rule, Severity: sev, Tags: tags}
		if ns != "-" {
			a.ObjectRef = &ingest.ObjectRef{Namespace: ns}
		}
		return a
	}
	// siem and quiet are in no route: they get everything their filter
	// passes. team-a, prod-pager and sec are routed.
	cases := []struct {
		a    detect.Alert
		want []string
	}{
		{alert("r1", "team-a", detect.SeverityLow), []string{"quiet", "siem", "team-a"}},
		{alert("r2", "team-a-web", detect.SeverityLow), []string{"quiet", "siem", "team-a"}},
		{alert("r3", "prod", detect.SeverityCritical), []string{"prod-pager", "quiet", "siem", "team-a"}},
		{alert("r4", "prod", detect.SeverityMedium), []string{"quiet", "siem", "team-a"}},
		{alert("r5", "prod-eu", detect.SeverityCritical), []string{"quiet", "siem", "team-a"}},
		{alert("r6", "kube-system", detect.SeverityHigh, "attack.credential-access"), []string{"quiet", "sec", "siem"}},
		{alert("pod-exec", "-", detect.SeverityHigh), []string{"quiet", "sec", "siem"}},
		{alert("r8", "", detect.SeverityHigh, "attack.discovery"), []string{"quiet", "siem"}},
		{alert("noisy-list", "team-b", detect.SeverityInfo), []string{"siem"}},
		{alert("r10", "team-b", detect.SeverityInfo, "benign"), []string{"siem"}},
	}
	rec := &recorder{got: map[string][]string{}}
	d, err := sinks.Build(t.Context(), cfg, sinks.WithWrap(func(name string, s sinks.Sink) sinks.Sink {
		return recSink{Sink: s, name: name, r: rec}
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if err := d.Dispatch(t.Context(), c.a); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		var got []string
		for name, rules := range rec.got {
			if slices.Contains(rules, c.a.Rule) {
				got = append(got, name)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s (namespace %v, %s, tags %v): sinks %v, want %v", c.a.Rule, c.a.ObjectRef, c.a.Severity, c.a.Tags, got, c.want)
		}
	}
}

func TestFileSink(t *testing.T) {
	if c := sinks.FileSink("output", "-"); c.Type != sinks.TypeStdout || c.Settings == nil {
		t.Errorf("FileSink(-) = %+v", c)
	}
	c := sinks.FileSink("output", "a.jsonl")
	if fc, _ := c.Settings.(*file.Config); c.Type != sinks.TypeFile || fc == nil || *fc != (file.Config{Path: "a.jsonl"}) {
		t.Errorf("FileSink(a.jsonl) = %+v", c)
	}
}
