// Package report writes the forensic report of a replay: one
// self-contained HTML file (inline CSS and SVG, no script, no external
// resource) with the incidents ranked, each with its timeline, objects,
// activity chart and rule hits, the coverage of the audit policy in
// effect, and the input read. It prints on paper as well as it reads on
// screen.
package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/detect/incident"
	"github.com/vigil-k8s/vigil/policies/auditpolicy"
)

// Data is what a report shows.
type Data struct {
	Generated time.Time
	Version   string
	// Files are the inputs read, with their events.
	Files  []File
	Events int64
	// From and To are the event times of the oldest and newest events.
	From, To time.Time
	// Activity counts the events read in steps of ActivityStep of event
	// time (Key is unused).
	Activity     []incident.Point[string]
	ActivityStep time.Duration
	// Rules is the number of rules enabled; Alerts the alerts raised.
	Rules, Alerts int
	Incidents     []incident.Incident
	// Policy names the audit policy file the coverage was checked
	// against; Coverage is nil when none was given.
	Policy   string
	Coverage *auditpolicy.Report
	// TimelineRows bounds each incident's timeline table (default 500).
	TimelineRows int
}

// File is one input and the events read from it.
type File struct {
	Name   string
	Events int64
}

//go:embed report.html
var page string

var tmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"time":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000Z") },
	"clock":    func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"duration": func(a, b time.Time) string { return b.Sub(a).Round(time.Millisecond).String() },
	"chart":    incidentChart,
	"activity": activityChart,
	"num":      func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"add":      func(a, b int) int { return a + b },
	"join":     strings.Join,
	"stageSet": stageSet,
	"take":     take,
	"verdicts": verdicts,
	"statuses": func() []auditpolicy.Status {
		return []auditpolicy.Status{auditpolicy.Blind, auditpolicy.Degraded, auditpolicy.Unverified, auditpolicy.Covered}
	},
	"timelineArgs": timelineArgs,
}).Parse(page))

// Write renders the report.
func Write(w io.Writer, d Data) error {
	if d.TimelineRows <= 0 {
		d.TimelineRows = 500
	}
	if err := tmpl.Execute(w, d); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return nil
}

// stageCell is one step of the kill chain as an incident reached it.
type stageCell struct {
	Name    string
	Reached bool
	Time    time.Time
}

// stageSet lays out the whole chain, reached stages marked.
func stageSet(hits []incident.StageHit) []stageCell {
	out := make([]stageCell, 0, incident.StageImpact)
	for s := incident.StageDiscovery; s <= incident.StageImpact; s++ {
		c := stageCell{Name: s.String()}
		for _, h := range hits {
			if h.Stage == s {
				c.Reached, c.Time = true, h.FirstTime
			}
		}
		out = append(out, c)
	}
	return out
}

// take returns the first n alerts.
func take(alerts []incident.AlertRef, n int) []incident.AlertRef {
	return alerts[:min(n, len(alerts))]
}

// verdicts returns the verdicts with the status.
func verdicts(r *auditpolicy.Report, s auditpolicy.Status) []auditpolicy.Verdict {
	var out []auditpolicy.Verdict
	for _, v := range r.Verdicts {
		if v.Status == s {
			out = append(out, v)
		}
	}
	return out
}

// timelineArgs is the input part of a vigil timeline command for the
// files read.
func timelineArgs(files []File) string {
	if len(files) == 0 || len(files) > 3 {
		return "FILE…"
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	return strings.Join(names, " ")
}
