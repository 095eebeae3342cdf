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
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/sinks"
)

type replayFlags struct {
	ruleFlags
	output    string
	format    string
	since     string
	until     string
	failOn    string
	failOnBad bool
	strict    bool
	workers   int
	lateness  time.Duration
	cluster   string
	quiet     bool
	// input is --input-format; actionsOutput --actions-output.
	input, actionsOutput string
	cpuProfile           string

	forensics forensicFlags
	baseline  baselineFlags
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
file:line and skipped (--strict stops at the first). An event whose JSON
cannot be read whole (a body nested too deep, a line cut after its
metadata) is evaluated on what can be read of it, marked vigil.bodyUnparsed,
and counted apart; --fail-on-bad makes either kind exit 3.`,
		Example: `  vigil replay /var/log/kubernetes/audit/
  vigil replay audit.log.gz --format text --fail-on high
  kubectl logs kube-apiserver-node1 | vigil replay -`,
		RunE: func(c *cobra.Command, args []string) error { return a.replay(c.Context(), f, args) },
	}
	f.register(c)
	f.forensics.register(c)
	f.baseline.register(c)
	fl := c.Flags()
	fl.StringVarP(&f.output, "output", "o", "", "write alerts to FILE instead of standard output")
	fl.StringVar(&f.format, "format", "json", "alert format: json (JSON lines) or text")
	fl.StringVar(&f.since, "since", "", "skip events before this time (RFC 3339, or a duration such as 24h before now)")
	fl.StringVar(&f.until, "until", "", "skip events after this time (RFC 3339, or a duration before now)")
	fl.StringVar(&f.failOn, "fail-on", "", "exit with code 3 if an alert of this severity or higher is raised (info|low|medium|high|critical)")
	fl.BoolVar(&f.failOnBad, "fail-on-bad", false, "exit with code 3 if any input was dropped or read only in part")
	fl.BoolVar(&f.strict, "strict", false, "stop at the first line that is not an audit event")
	fl.IntVar(&f.workers, "workers", 0, "matching goroutines (default: config detect.workers, else all cores)")
	fl.DurationVar(&f.lateness, "lateness", 0, "allowed lateness of events for windows (default: config detect.lateness, else 5m)")
	fl.StringVar(&f.cluster, "cluster", "", "cluster name put in alerts (default: config cluster)")
	fl.StringVar(&f.input, "input-format", "auto", "input format: auto, audit, eks, gke or aks (docs/sources.md)")
	fl.StringVar(&f.actionsOutput, "actions-output", "", actionsOutputUsage)
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no summary or progress on standard error")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to FILE (go tool pprof)")
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

// timeRange parses --since and --until, both relative to now.
func timeRange(since, until string) (time.Time, time.Time, error) {
	now := time.Now()
	from, err := parseTimeFlag("since", since, now)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	to, err := parseTimeFlag("until", until, now)
	return from, to, err
}

// inputs returns the files to read: args, or standard input when it is a
// pipe.
func (a *app) inputs(args []string) ([]string, error) {
	if len(args) > 0 {
		return args, nil
	}
	if !a.stdinIsPipe {
		return nil, usagef("no input: give audit log files or directories, or pipe events to standard input")
	}
	return []string{"-"}, nil
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
	since, until, err := timeRange(f.since, f.until)
	if err != nil {
		return err
	}
	if args, err = a.inputs(args); err != nil {
		return err
	}
	cfg, rs, err := f.ruleSet()
	if err != nil {
		return err
	}
	if f.cpuProfile != "" {
		stop, err := startCPUProfile(f.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	fx, err := a.newForensics(f.forensics, rs)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		// Replay allocates per event and holds little: collect less often.
		defer debug.SetGCPercent(debug.SetGCPercent(400))
		// A soft limit lets the heap grow for speed up to a bound that
		// keeps a long replay small; GOMEMLIMIT overrides it.
		if os.Getenv("GOMEMLIMIT") == "" {
			defer debug.SetMemoryLimit(debug.SetMemoryLimit(224 << 20))
		}
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
	if send, closeOutput, err = a.replayActions(ctx, cfg, rs, f.actionsOutput, send, closeOutput); err != nil {
		return err
	}
	defer closeOutput(context.WithoutCancel(ctx))
	sum := newSummary()
	var tripped []detect.Alert
	emit := func(al detect.Alert) error {
		sum.alert(al)
		fx.alert(al)
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
	onSalvage := func(origin string, err error) {
		mu.Lock()
		defer mu.Unlock()
		sum.salvage(origin, err)
	}
	// The engine tells the records read only in part: it decodes them
	// anyway.
	reader, truncated, err := openReplayInput(args, a.stdin, f.input, cluster, onError, nil, rs)
	if err != nil {
		return err
	}

	set := metrics.NewSet()
	eng, err := detect.New(detect.Options{
		Rules: rs, Workers: workers, Emit: emit, Metrics: set, Logger: a.logger, Lateness: lateness,
		MaxKeysPerRule: cfg.Detect.MaxKeysPerRule, DistinctExact: cfg.Detect.DistinctExact, Since: since, Until: until,
		OnReject:  func(r ingest.Record, err error) { _ = onError(r.Origin, err) },
		OnSalvage: func(r ingest.Record, err error) { onSalvage(r.Origin, err) },
		Observe:   fx.observe(),
	})
	if err != nil {
		return err
	}
	if err := f.baseline.loadInto(eng, a.stderr, f.quiet); err != nil {
		return err
	}

	src := fx.meter(reader, args)
	progress := a.startProgress(f.quiet, src)
	defer progress.stop()
	defer reader.Close(ctx)
	// The engine reads ahead and matches batches on every worker while
	// it applies the ones before in order.
	err = eng.Run(ctx, src, func(b ingest.Batch) error {
		sum.events.Add(int64(len(b.Records)))
		return stopped()
	})
	if err != nil {
		if serr := stopped(); serr != nil {
			return serr
		}
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := eng.Flush(ctx); err != nil {
		return err
	}
	if err := f.baseline.saveFrom(eng); err != nil {
		return err
	}
	if err := closeOutput(ctx); err != nil {
		return fmt.Errorf("deliver alerts: %w", err)
	}
	progress.stop()
	if err := fx.finish(); err != nil {
		return err
	}
	sum.duplicates = int(set.GetOrCreateCounter("vigil_detect_duplicate_events_total").Get())
	sum.late = int(set.GetOrCreateCounter("vigil_detect_late_events_total").Get())
	if !f.quiet {
		sum.print(a.stderr, rs)
		truncated.print(a.stderr)
	}
	var gates []string
	if len(tripped) > 0 {
		gates = append(gates, fmt.Sprintf("%d alerts at or above %s (--fail-on)", len(tripped), failOn))
	}
	if f.failOnBad && sum.dropped+sum.salvaged > 0 {
		gates = append(gates, fmt.Sprintf("%d inputs dropped and %d read only in part (--fail-on-bad)", sum.dropped, sum.salvaged))
	}
	if len(gates) > 0 {
		return gateError{strings.Join(gates, "; ")}
	}
	return nil
}

// startCPUProfile profiles the process into path until the returned
// function is called.
func startCPUProfile(path string) (func(), error) {
	out, err := os.Create(path)
	if err != nil {
		return nil, usagef("--cpuprofile: %v", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		out.Close()
	}, nil
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
	events atomic.Int64
	// dropped inputs are not audit events; salvaged ones were evaluated
	// on what could be read of them.
	dropped, salvaged, duplicates, late int
	droppedSamples, salvagedSamples     []string
	byRule                              map[string]int
	bySeverity                          map[detect.Severity]int
	byUser                              map[string]int
	started                             time.Time
}

func newSummary() *summary {
	return &summary{byRule: map[string]int{}, bySeverity: map[detect.Severity]int{}, byUser: map[string]int{}, started: time.Now()}
}

func (s *summary) alert(a detect.Alert) {
	s.byRule[a.Rule]++
	s.bySeverity[a.Severity]++
	// Cloned: the alert's strings may share the memory of its event.
	s.byUser[strings.Clone(cmp.Or(a.User.Username, "(anonymous)"))]++
}

func (s *summary) bad(origin string, err error) {
	s.dropped++
	if len(s.droppedSamples) < 10 {
		s.droppedSamples = append(s.droppedSamples, fmt.Sprintf("%s: %v", origin, err))
	}
}

func (s *summary) salvage(origin string, err error) {
	s.salvaged++
	if len(s.salvagedSamples) < 10 {
		s.salvagedSamples = append(s.salvagedSamples, fmt.Sprintf("%s: %v", origin, err))
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
	if s.dropped > 0 || s.salvaged > 0 || s.duplicates > 0 || s.late > 0 {
		fmt.Fprintf(w, "  %d dropped (not audit events), %d salvaged (read in part, evaluated on their metadata), %d duplicate events dropped, %d events too late for windows\n",
			s.dropped, s.salvaged, s.duplicates, s.late)
	}
	samples(w, "dropped", s.droppedSamples, s.dropped)
	samples(w, "salvaged", s.salvagedSamples, s.salvaged)
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

func samples(w io.Writer, what string, list []string, n int) {
	for _, b := range list {
		fmt.Fprintf(w, "  %s: %s\n", what, b)
	}
	if n > len(list) {
		fmt.Fprintf(w, "  %s: ... and %d more\n", what, n-len(list))
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
