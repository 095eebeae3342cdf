package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/detect/incident"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/report"
	"github.com/vigil-k8s/vigil/policies/auditpolicy"
)

// forensicFlags are replay's flags for incidents and the report.
type forensicFlags struct {
	incidents, report, auditPolicy string
}

func (f *forensicFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.incidents, "incidents", "", "write the incidents (alerts grouped by linked credentials, highest risk first) as JSON to FILE")
	fl.StringVar(&f.report, "report", "", "write a self-contained HTML report of the incidents to FILE")
	fl.StringVar(&f.auditPolicy, "audit-policy", "", "the cluster's audit policy file: the report says which rules it leaves blind or degraded")
}

// forensics groups a replay's alerts into incidents and writes them
// (--incidents) and the report (--report). Its methods are called from the
// goroutine running the replay, except the meter's, which records the
// input in the reading goroutine.
type forensics struct {
	flags    forensicFlags
	version  string
	rules    int
	tracker  *incident.Tracker
	alerts   int
	input    *inputLog
	coverage *auditpolicy.Report
}

// newForensics checks the flags and the audit policy before the replay
// starts, so that a mistake does not cost a long run.
func (a *app) newForensics(f forensicFlags, rs *detect.RuleSet) (*forensics, error) {
	fx := &forensics{flags: f, version: a.version, rules: len(rs.Rules)}
	if f.auditPolicy != "" && f.report == "" {
		return nil, usagef("--audit-policy is read for the report: add --report FILE")
	}
	for _, p := range []struct{ flag, path string }{{"incidents", f.incidents}, {"report", f.report}} {
		if p.path == "" {
			continue
		}
		if st, err := os.Stat(filepath.Dir(p.path)); err != nil || !st.IsDir() {
			return nil, usagef("--%s %s: no such directory %s", p.flag, p.path, filepath.Dir(p.path))
		}
		if st, err := os.Stat(p.path); err == nil && st.IsDir() {
			return nil, usagef("--%s %s is a directory", p.flag, p.path)
		}
	}
	if f.incidents == "" && f.report == "" {
		return fx, nil
	}
	fx.tracker = incident.NewTracker(incident.Options{})
	if f.report != "" {
		fx.input = &inputLog{activity: incident.NewSeries[string](maxActivityPoints)}
	}
	if f.auditPolicy != "" {
		data, err := os.ReadFile(f.auditPolicy)
		if err != nil {
			return nil, usagef("read audit policy: %w", err)
		}
		p, err := auditpolicy.Load(data)
		if err != nil {
			return nil, usagef("%s: %w", f.auditPolicy, err)
		}
		if fx.coverage, err = auditpolicy.Check(p, rs); err != nil {
			return nil, fmt.Errorf("check audit policy: %w", err)
		}
	}
	return fx, nil
}

// alert takes an alert the replay raised.
func (fx *forensics) alert(al detect.Alert) {
	if fx.tracker == nil {
		return
	}
	fx.alerts++
	fx.tracker.Observe(al)
}

// meter wraps the replay's reader to count its progress and, for the
// report, the events of each file.
func (fx *forensics) meter(src ingest.Source, paths []string) *meter {
	m := newMeter(src, paths)
	if fx.input != nil {
		m.onBatch = fx.input.batch
	}
	return m
}

// observe is the engine's Observe: for incidents, it notes who wrote
// bindings and, for the report, the time range and the events over time.
// nil when neither is asked for.
func (fx *forensics) observe() func(*ingest.Record, *ingest.Event) {
	if fx.tracker == nil {
		return nil
	}
	return func(_ *ingest.Record, ev *ingest.Event) {
		fx.tracker.Note(ev)
		if fx.input != nil {
			fx.input.event(ev.Time())
		}
	}
}

// finish writes the incidents and the report.
func (fx *forensics) finish() error {
	if fx.tracker == nil {
		return nil
	}
	incs := fx.tracker.Incidents()
	if fx.flags.incidents != "" {
		data, err := json.MarshalIndent(incs, "", "  ")
		if err != nil {
			return fmt.Errorf("write incidents: %w", err)
		}
		if err := os.WriteFile(fx.flags.incidents, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("write incidents: %w", err)
		}
	}
	if fx.flags.report == "" {
		return nil
	}
	in := fx.input.snapshot()
	d := report.Data{Generated: time.Now(), Version: fx.version, Files: in.files, Events: in.events,
		From: in.from, To: in.to, Activity: in.points, ActivityStep: in.step, Rules: fx.rules, Alerts: fx.alerts,
		Incidents: incs, Policy: fx.flags.auditPolicy, Coverage: fx.coverage}
	var buf bytes.Buffer
	if err := report.Write(&buf, d); err != nil {
		return err
	}
	if err := os.WriteFile(fx.flags.report, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// maxActivityPoints bounds the report's series of events over time.
const maxActivityPoints = 10_000

// inputLog records what was read: events per file (batch, in the reading
// goroutine), over event time and the time range (event, from the
// engine's workers).
type inputLog struct {
	mu       sync.Mutex
	files    []report.File
	activity *incident.Series[string]
	from, to time.Time
	// sec and n count the events of the current second before they go
	// to activity: most events fall in the same second as the previous.
	sec int64
	n   int
}

func (l *inputLog) batch(b ingest.Batch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range b.Records {
		if n := len(l.files); n == 0 || !sameFile(r.Origin, l.files[n-1].Name) {
			l.files = append(l.files, report.File{Name: strings.Clone(originFile(r.Origin))})
		}
		l.files[len(l.files)-1].Events++
	}
}

func (l *inputLog) event(t time.Time) {
	if t.IsZero() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := t.Unix(); s != l.sec {
		l.flush()
		l.sec = s
	}
	l.n++
	if l.from.IsZero() || t.Before(l.from) {
		l.from = t
	}
	if t.After(l.to) {
		l.to = t
	}
}

type inputSnapshot struct {
	files    []report.File
	events   int64
	from, to time.Time
	points   []incident.Point[string]
	step     time.Duration
}

func (l *inputLog) flush() {
	if l.n > 0 {
		l.activity.Add(time.Unix(l.sec, 0), "", l.n)
		l.n = 0
	}
}

func (l *inputLog) snapshot() inputSnapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flush()
	s := inputSnapshot{files: slices.Clone(l.files), from: l.from, to: l.to, points: l.activity.Points(), step: l.activity.Step()}
	for _, f := range l.files {
		s.events += f.Events
	}
	return s
}

// sameFile reports whether origin is in file, as originFile(origin) ==
// file but cheaply for the common case: file, a colon, a line number.
func sameFile(origin, file string) bool {
	rest, ok := strings.CutPrefix(origin, file)
	switch {
	case !ok:
		return false
	case rest == "":
		return strings.LastIndexByte(origin, ':') <= 0
	}
	return file != "" && rest[0] == ':' && strings.IndexByte(rest[1:], ':') < 0
}

// originFile is the file part of a record's origin ("file:line", "file:
// item N").
func originFile(origin string) string {
	if i := strings.LastIndexByte(origin, ':'); i > 0 {
		return origin[:i]
	}
	return origin
}
