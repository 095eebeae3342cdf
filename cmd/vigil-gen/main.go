// Command vigil-gen writes a large, realistic kube-apiserver audit log (JSON
// lines) for benchmarks and load tests. The output depends only on the
// flags: the same -seed gives the same bytes.
//
//	vigil-gen -n 1000000 -o /tmp/audit.log
//	vigil-gen -profile benign-day -n 130000 -o /tmp/day.log
//
// -profile benign-day writes a day of normal cluster life (people, CI,
// Helm, operators, node churn) on which the built-in rules should raise
// nothing above low; its rate defaults to one day per 130,000 events.
//
// -forbidden-flood writes instead -n forbidden requests, each from its own
// user and address: the input that fills window keys to their bound.
//
// -days N writes N whole days of event time instead of -n events (first-seen
// baselines learn over days), and -stolen-token-day D adds at noon of day D
// the CI deployer's token used by a python-requests script from outside:
//
//	vigil-gen -profile benign-day -days 9 -stolen-token-day 9 -o /tmp/days.log
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/internal/auditgen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "vigil-gen:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil-gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 100_000, "number of events to write")
	out := fs.String("o", "", "output file (default standard output)")
	seed := fs.Uint64("seed", 1, "random seed; the same seed gives the same log")
	rate := fs.Float64("rate", auditgen.DefaultRate, "events per second of event time (benign-day: "+strconv.FormatFloat(auditgen.BenignDayRate, 'g', -1, 64)+")")
	profile := fs.String("profile", auditgen.ProfileMix, "traffic: "+strings.Join(auditgen.Profiles, " or "))
	nodes := fs.Int("nodes", auditgen.DefaultNodes, "nodes in the simulated cluster")
	start := fs.String("start", auditgen.DefaultStart.Format(time.RFC3339), "event time of the first event (RFC 3339)")
	flood := fs.Bool("forbidden-flood", false, "write forbidden requests, each from its own user and address, instead of a cluster's log")
	days := fs.Int("days", 0, "write this many days of event time instead of -n events")
	stolenDay := fs.Int("stolen-token-day", 0, "with -days: on this day (1 is the first) the CI deployer's token is used from outside by a script")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags: -n -o -seed -rate -nodes -start -profile -forbidden-flood -days -stolen-token-day)", fs.Arg(0))
	}
	opts := auditgen.Options{Seed: *seed, Rate: *rate, Nodes: *nodes, Profile: *profile}
	if err := opts.Check(); err != nil {
		return fmt.Errorf("-profile: %w", err)
	}
	rateSet := false
	fs.Visit(func(f *flag.Flag) { rateSet = rateSet || f.Name == "rate" })
	if *profile == auditgen.ProfileBenignDay && !rateSet {
		opts.Rate = auditgen.BenignDayRate
	}
	if *n < 0 {
		return fmt.Errorf("-n %d: want a count of events, 0 or more", *n)
	}
	if *rate <= 0 {
		return fmt.Errorf("-rate %g: want events per second above 0", *rate)
	}
	if *nodes <= 0 {
		return fmt.Errorf("-nodes %d: want at least 1", *nodes)
	}
	t0, err := time.Parse(time.RFC3339Nano, *start)
	if err != nil {
		return fmt.Errorf("-start %q: want an RFC 3339 time such as 2026-11-22T06:00:00Z", *start)
	}
	dd := auditgen.Days{Days: *days, StolenTokenDay: *stolenDay}
	if err := dd.Check(); (*days != 0 || *stolenDay != 0) && err != nil {
		return fmt.Errorf("-days, -stolen-token-day: %w", err)
	}
	w := stdout
	var f *os.File
	if *out != "" && *out != "-" {
		f, err = os.Create(*out)
		if err != nil {
			return fmt.Errorf("create output: %w", err)
		}
		defer f.Close()
		w = f
	}
	if *flood {
		if err := writeFlood(w, t0, *rate, *n); err != nil {
			return err
		}
	} else if *days > 0 {
		opts.Start = t0
		dd.Options = opts
		if _, err := auditgen.WriteDays(w, dd); err != nil {
			return err
		}
	} else {
		opts.Start = t0
		if _, err := auditgen.Write(w, opts, *n); err != nil {
			return err
		}
	}
	if f != nil {
		if err := f.Close(); err != nil {
			return fmt.Errorf("close output: %w", err)
		}
	}
	return nil
}

// writeFlood writes n forbidden list requests at rate events per second,
// each from its own user and source address.
func writeFlood(w io.Writer, start time.Time, rate float64, n int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	step := time.Duration(float64(time.Second) / rate)
	for i := range n {
		t := start.Add(time.Duration(i) * step).UTC().Format(time.RFC3339Nano)
		_, err := fmt.Fprintf(bw, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata",`+
			`"auditID":"%08x-0000-4000-8000-%012x","stage":"ResponseComplete","requestURI":"/api/v1/secrets",`+
			`"verb":"list","user":{"username":"flood-%d","groups":["system:authenticated"]},`+
			`"sourceIPs":["10.%d.%d.%d"],"userAgent":"curl/8.5.0","objectRef":{"resource":"secrets","apiVersion":"v1"},`+
			`"responseStatus":{"metadata":{},"status":"Failure","reason":"Forbidden","code":403},`+
			`"requestReceivedTimestamp":%q,"stageTimestamp":%q,`+
			`"annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}}`+"\n",
			i, i, i, i>>16&255, i>>8&255, i&255, t, t)
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	return bw.Flush()
}
