package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest/envelope"
	"github.com/vigil-k8s/vigil/policies/auditpolicy"
)

// openReplayInput opens replay's inputs in the format --input-format names
// (auto: raw audit logs through ingest/logfile, the managed services'
// envelopes through ingest/envelope, detected per file and per value). The
// report counts the events the providers cut and names the rules that read
// their lost bodies.
func openReplayInput(args []string, stdin io.Reader, format, cluster string, onError func(string, error) error, onSalvage func(string, error), rs *detect.RuleSet) (*envelope.Reader, *truncationReport, error) {
	f, err := envelope.ParseFormat(format)
	if err != nil {
		return nil, nil, usagef("--input-format: %v", err)
	}
	rep := &truncationReport{readers: auditpolicy.NewBodyReaders(rs), byRule: map[string]int{}}
	r, err := envelope.Open(args, stdin, envelope.Options{Format: f, Cluster: cluster, OnError: onError, OnSalvage: onSalvage, OnTruncated: rep.add})
	if err != nil {
		return nil, nil, usageError{err}
	}
	rep.reader = r
	return r, rep, nil
}

// truncationReport collects what replay must say about events a provider
// cut.
type truncationReport struct {
	readers *auditpolicy.BodyReaders
	reader  *envelope.Reader
	mu      sync.Mutex
	events  int
	byRule  map[string]int
	samples []string
}

func (t *truncationReport) add(it envelope.Item) {
	rules := t.readers.Rules(it.Data)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events++
	for _, r := range rules {
		t.byRule[r]++
	}
	if len(t.samples) < 5 {
		t.samples = append(t.samples, fmt.Sprintf("%s: %s event %s cut at %s", it.Origin, strings.ToUpper(string(it.Provider)), it.AuditID, it.Lost))
	}
}

// print writes the counts per envelope and, when events were cut, the
// rules that may have missed them.
func (t *truncationReport) print(w io.Writer) {
	counts := t.reader.Counts()
	var formats []string
	for f, c := range counts {
		if f != envelope.Audit && f != envelope.Auto {
			formats = append(formats, fmt.Sprintf("%s %d events (%d cut, %d skipped, %d bad)", strings.ToUpper(string(f)), c.Events, c.Truncated, c.Skipped, c.Bad))
		}
	}
	if len(formats) == 0 {
		return
	}
	sort.Strings(formats)
	fmt.Fprintf(w, "  envelopes: %s\n", strings.Join(formats, "; "))
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.events == 0 {
		return
	}
	fmt.Fprintf(w, "  %d events were cut by their provider and read from what was kept (annotation vigil.dev/truncated):\n", t.events)
	for _, s := range t.samples {
		fmt.Fprintf(w, "    %s\n", s)
	}
	if len(t.byRule) == 0 {
		fmt.Fprintf(w, "  no enabled rule reads the bodies they lost\n")
		return
	}
	rules := make([]string, 0, len(t.byRule))
	for r := range t.byRule {
		rules = append(rules, r)
	}
	sort.Strings(rules)
	fmt.Fprintf(w, "  rules that read the bodies they lost, and may have missed them:\n")
	for _, r := range rules {
		fmt.Fprintf(w, "    %6d  %s\n", t.byRule[r], r)
	}
}
