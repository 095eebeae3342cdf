// Command vigil-gen writes a large, realistic kube-apiserver audit log (JSON
// lines) for benchmarks and load tests. The output depends only on the
// flags: the same -seed gives the same bytes.
//
//	vigil-gen -n 1000000 -o /tmp/audit.log
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
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
	rate := fs.Float64("rate", auditgen.DefaultRate, "events per second of event time")
	nodes := fs.Int("nodes", auditgen.DefaultNodes, "nodes in the simulated cluster")
	start := fs.String("start", auditgen.DefaultStart.Format(time.RFC3339), "event time of the first event (RFC 3339)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags: -n -o -seed -rate -nodes -start)", fs.Arg(0))
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
	opts := auditgen.Options{Seed: *seed, Start: t0, Rate: *rate, Nodes: *nodes}
	if _, err := auditgen.Write(w, opts, *n); err != nil {
		return err
	}
	if f != nil {
		if err := f.Close(); err != nil {
			return fmt.Errorf("close output: %w", err)
		}
	}
	return nil
}
