package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/logfile"
	"github.com/vigil-k8s/vigil/sinks"
)

type replayFlags struct {
	ruleFlags
	output   string
	format   string
	since    string
	until    string
	failOn   string
	strict   bool
	workers  int
	lateness time.Duration
	cluster  string
	quiet    bool
}

func (a *app) replayCmd() *cobra.Command {
	var f replayFlags
	c := &cobra.Command{
		Use:   "replay [FILE|DIR|-]...",
		Short: "Evaluate the rules over audit log files",
		Long: `Replay reads audit events as kube-apiserver's log backend writes them (one JSON
event per line), gzip-compressed or not, directories of rotated logs (in time
order), JSON documents holding an EventList, and standard input ("-", or no
argument with piped input). It raises the same alerts as live detection.

Alerts go to standard output as JSON lines (or -o FILE; --format text for
people); a summary goes to standard error. Bad lines are reported with
file:line and skipped (--strict stops at the first).`,
		Example: `  vigil replay /var/log/kubernetes/audit/
  vigil replay audit.log.gz --format text --fail-on high
  kubectl logs kube-apiserver-node1 | vigil replay -`,
		RunE: func(c *cobra.Command, args []string) error { return a.replay(c.Context(), f, args) },
	}
	f.register(c)
	fl := c.Flags()
	fl.StringVarP(&f.output, "output", "o", "", "write alerts to FILE instead of standard output")
	fl.StringVar(&f.format, "format", "json", "alert format: json (JSON lines) or text")
	fl.StringVar(&f.since, "since", "", "skip events before this time (RFC 3339, or a duration such as 24h before now)")
	fl.StringVar(&f.until, "until", "", "skip events after this time (RFC 3339, or a duration before now)")
	fl.StringVar(&f.failOn, "fail-on", "", "exit with code 3 if an alert of this severity or higher is raised (info|low|medium|high|critical)")
	fl.BoolVar(&f.strict, "strict", false, "stop at the first line that is not an audit event")
	fl.IntVar(&f.workers, "workers", 0, "matching goroutines (default: config detect.workers, else all cores)")
	fl.DurationVar(&f.lateness, "lateness", 0, "allowed lateness of events for windows (default: config detect.lateness, else 5m)")
	fl.StringVar(&f.cluster, "cluster", "", "cluster name put in alerts (default: config cluster)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no summary or progress on standard error")
	return c
}

func parseTimeFlag(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, usagef("--%s %q: want an RFC 3339 time (2026-11-22T06:00:00Z) or a duration (24h)", name, v)
	}
	return t, nil
}

func (a *app) replay(ctx context.Context, f replayFlags, args []string) error {
	var failOn detect.Severity
	if f.failOn != "" {
		s, err := detect.ParseSeverity(f.failOn)
		if err != nil {
			return usagef("--fail-on: %v", err)
		}
		failOn = s
	}
	if f.format != "json" && f.format != "text" {
		return usagef("--format %q: want json or text", f.format)
	}
	now := time.Now()
	since, err := parseTimeFlag("since", f.since, now)
	if err != nil {
		return err
	}
	until, err := parseTimeFlag("until", f.until, now)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		if !a.stdinIsPipe {
			return usagef("no input: give audit log files or directories, or pipe events to standard input")
		}
		args = []string{"-"}
	}
	cfg, rs, err := f.ruleSet()
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		// Replay allocates per event and holds little: collect less often.
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	cluster := cmp.Or(f.cluster, cfg.Cluster)
	workers := cmp.Or(f.workers, cfg.Detect.Workers)
	lateness := cmp.Or(f.lateness, cfg.lateness())

	// Alerts go through the sinks (stdout, -o FILE and the config's sinks:
	// list), the same code as vigil serve; --format text is for a person
	// at a terminal and writes lines itself.
	send, closeOutput, err := a.replayOutput(ctx, cfg, f)
	if err != nil {
		return err
	}
	defer closeOutput(context.WithoutCancel(ctx))
	sum := newSummary()
	var tripped []detect.Alert
	emit := func(al detect.Alert) error {
		sum.alert(al)
		if failOn != detect.SeverityUnknown && al.Severity >= failOn {
			tripped = append(tripped, al)
		}
		return send(al)
	}

	// onError is called by the reader (in its goroutine) and by the
	// engine (in this one).
	var (
		mu        sync.Mutex
		strictErr error
	)
	onError := func(origin string, err error) error {
		mu.Lock()
		defer mu.Unlock()
		sum.bad(origin, err)
		if f.strict && strictErr == nil {
			strictErr = fmt.Errorf("%s: %w", origin, err)
		}
		if f.strict {
			return strictErr
		}
		return nil
	}
	stopped := func() error {
		mu.Lock()
		defer mu.Unlock()
		return strictErr
	}
	reader, err := logfile.Open(args, a.stdin, logfile.Options{Cluster: cluster, OnError: onError})
	if err != nil {
		return usageError{err}
	}

	set := metrics.NewSet()
	eng, err := detect.New(detect.Options{
		Rules: rs, Workers: workers, Emit: emit, Metrics: set, Logger: a.logger, Lateness: lateness,
		MaxKeysPerRule: cfg.Detect.MaxKeysPerRule, Since: since, Until: until,
		OnReject: func(r ingest.Record, err error) { _ = onError(r.Origin, err) },
	})
	if err != nil {
		return err
	}

	progress := a.progress(f.quiet, sum)
	defer progress.stop()
	readCtx, stopReading := context.WithCancel(ctx)
	batches := readAhead(readCtx, reader, 2)
	defer func() {
		// The reader goroutine must be done before the reader closes.
		stopReading()
		for range batches {
		}
		reader.Close(ctx)
	}()
	for b := range batches {
		if b.err != nil {
			if errors.Is(b.err, io.EOF) {
				break
			}
			if err := stopped(); err != nil {
				return err
			}
			return fmt.Errorf("read input: %w", b.err)
		}
		sum.events.Add(int64(len(b.batch.Records)))
		if err := eng.Process(ctx, b.batch); err != nil {
			return err
		}
		if err := stopped(); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := eng.Flush(ctx); err != nil {
		return err
	}
	if err := closeOutput(ctx); err != nil {
		return fmt.Errorf("deliver alerts: %w", err)
	}
	progress.stop()
	sum.duplicates = int(set.GetOrCreateCounter("vigil_detect_duplicate_events_total").Get())
	sum.late = int(set.GetOrCreateCounter("vigil_detect_late_events_total").Get())
	if !f.quiet {
		sum.print(a.stderr, rs)
	}
	if len(tripped) > 0 {
		return gateError{fmt.Sprintf("%d alerts at or above %s (--fail-on)", len(tripped), failOn)}
	}
	return nil
}

// replayOutput returns where replay's alerts go and the function that
// flushes and closes it (safe to call twice).
func (a *app) replayOutput(ctx context.Context, cfg *Config, f replayFlags) (func(detect.Alert) error, func(context.Context) error, error) {
	send, closeAll, err := a.replayTargets(ctx, cfg, f)
	if err != nil {
		return nil, nil, err
	}
	var once sync.Once
	var cerr error
	return send, func(ctx context.Context) error {
		once.Do(func() { cerr = closeAll(ctx) })
		return cerr
	}, nil
}

// replayTargets builds the sinks, and for --format text the writer of lines.
func (a *app) replayTargets(ctx context.Context, cfg *Config, f replayFlags) (func(detect.Alert) error, func(context.Context) error, error) {
	if f.format != "text" {
		disp, err := a.buildSinks(ctx, cfg, sinkSetup{output: f.output})
		if err != nil {
			return nil, nil, err
		}
		return func(al detect.Alert) error { return disp.Dispatch(ctx, al) }, disp.Close, nil
	}
	var disp *sinks.Dispatcher
	if sc, err := cfg.sinkConfig(); err != nil {
		return nil, nil, err
	} else if len(sc.Sinks) > 0 {
		if disp, err = a.buildSinks(ctx, cfg, sinkSetup{}); err != nil {
			return nil, nil, err
		}
	}
	var out io.Writer = a.stdout
	var file *os.File
	if f.output != "" {
		var err error
		if file, err = os.Create(f.output); err != nil {
			if disp != nil {
				disp.Close(ctx)
			}
			return nil, nil, usagef("create output: %v", err)
		}
		out = file
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	write := textWriter(bw)
	closeAll := func(ctx context.Context) error {
		err := bw.Flush()
		if file != nil {
			err = errors.Join(err, file.Close())
		}
		if disp != nil {
			err = errors.Join(err, disp.Close(ctx))
		}
		return err
	}
	send := func(al detect.Alert) error {
		if disp != nil {
			if err := disp.Dispatch(ctx, al); err != nil {
				return err
			}
		}
		return write(al)
	}
	return send, closeAll, nil
}

type readResult struct {
	batch ingest.Batch
	err   error
}

// readAhead reads batches in its own goroutine so reading overlaps with
// detection; at most n batches wait, which bounds memory.
func readAhead(ctx context.Context, src ingest.Source, n int) <-chan readResult {
	ch := make(chan readResult, n)
	go func() {
		defer close(ch)
		for {
			b, err := src.Read(ctx)
			if len(b.Records) > 0 {
				select {
				case ch <- readResult{batch: b}:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				select {
				case ch <- readResult{err: err}:
				case <-ctx.Done():
				}
				return
			}
		}
	}()
	return ch
}

// textWriter returns a function writing one alert per line for people.
func textWriter(w io.Writer) func(detect.Alert) error {
	return func(al detect.Alert) error {
		_, err := io.WriteString(w, formatText(al)+"\n")
		return err
	}
}

// formatText renders an alert on one line for people.
func formatText(al detect.Alert) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %-8s %s: %s", al.Time.UTC().Format(time.RFC3339), strings.ToUpper(al.Severity.String()), al.Rule, al.Message)
	if al.Count > 1 {
		fmt.Fprintf(&sb, " [count=%d]", al.Count)
	}
	return sb.String()
}

// summary counts what a replay saw, for the report on stderr.
type summary struct {
	events                     atomic.Int64
	badLines, duplicates, late int
	badSamples                 []string
	byRule                     map[string]int
	bySeverity                 map[detect.Severity]int
	byUser                     map[string]int
	started                    time.Time
}

func newSummary() *summary {
	return &summary{byRule: map[string]int{}, bySeverity: map[detect.Severity]int{}, byUser: map[string]int{}, started: time.Now()}
}

func (s *summary) alert(a detect.Alert) {
	s.byRule[a.Rule]++
	s.bySeverity[a.Severity]++
	s.byUser[cmp.Or(a.User.Username, "(anonymous)")]++
}

func (s *summary) bad(origin string, err error) {
	s.badLines++
	if len(s.badSamples) < 10 {
		s.badSamples = append(s.badSamples, fmt.Sprintf("%s: %v", origin, err))
	}
}

func (s *summary) print(w io.Writer, rs *detect.RuleSet) {
	el := time.Since(s.started)
	total := 0
	for _, n := range s.byRule {
		total += n
	}
	fmt.Fprintf(w, "vigil replay: %d events in %s (%.0f events/s), %d rules, %d alerts\n",
		s.events.Load(), el.Round(time.Millisecond), float64(s.events.Load())/max(el.Seconds(), 1e-9), len(rs.Rules), total)
	if s.badLines > 0 || s.duplicates > 0 || s.late > 0 {
		fmt.Fprintf(w, "  %d bad lines, %d duplicate events dropped, %d events too late for windows\n", s.badLines, s.duplicates, s.late)
	}
	for _, b := range s.badSamples {
		fmt.Fprintf(w, "  bad: %s\n", b)
	}
	if s.badLines > len(s.badSamples) {
		fmt.Fprintf(w, "  bad: ... and %d more\n", s.badLines-len(s.badSamples))
	}
	if total == 0 {
		return
	}
	fmt.Fprintf(w, "  alerts by rule:\n")
	for _, kv := range sortedCounts(s.byRule) {
		sev := ""
		if r := rs.Rule(kv.k); r != nil {
			sev = r.Spec.Severity.String()
		}
		fmt.Fprintf(w, "    %6d  %-8s %s\n", kv.n, sev, kv.k)
	}
	fmt.Fprintf(w, "  top users:\n")
	for i, kv := range sortedCounts(s.byUser) {
		if i == 5 {
			break
		}
		fmt.Fprintf(w, "    %6d  %s\n", kv.n, kv.k)
	}
}

type kv struct {
	k string
	n int
}

func sortedCounts(m map[string]int) []kv {
	out := make([]kv, 0, len(m))
	for k, n := range m {
		out = append(out, kv{k, n})
	}
	slices.SortFunc(out, func(a, b kv) int { return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.k, b.k)) })
	return out
}

// progressLine prints events/s on a terminal every second.
type progressLine struct {
	done    chan struct{}
	stopped bool
	w       io.Writer
}

func (a *app) progress(quiet bool, s *summary) *progressLine {
	p := &progressLine{done: make(chan struct{}), w: a.stderr}
	if quiet || !a.stderrIsTerminal {
		p.stopped = true
		return p
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				fmt.Fprint(p.w, "\r\033[K")
				return
			case <-t.C:
				el := time.Since(s.started).Seconds()
				n := s.events.Load()
				fmt.Fprintf(p.w, "\r\033[K%d events, %.0f events/s", n, float64(n)/el)
			}
		}
	}()
	return p
}

func (p *progressLine) stop() {
	if !p.stopped {
		p.stopped = true
		close(p.done)
	}
}
