package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/detect"
)

// baselineFlags are replay's first-seen baselines (docs/first-seen.md):
// --baseline loads what an earlier replay or serve learned, and
// --save-baseline writes what this replay knows at its end, so that last
// month's logs teach what this week's are judged against.
type baselineFlags struct {
	load, save string
}

func (f *baselineFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.load, "baseline", "", "load first-seen baselines from FILE before replaying (written by --save-baseline, or serve's data-dir/baselines.json)")
	c.Flags().StringVar(&f.save, "save-baseline", "", "write the first-seen baselines to FILE at the end (may be the --baseline file)")
}

// loadInto loads the --baseline file into eng, which has processed nothing
// yet. Baselines of rules that changed since are dropped, and said so on
// stderr unless quiet; a file that cannot be read is a usage error.
func (f baselineFlags) loadInto(eng *detect.Engine, stderr io.Writer, quiet bool) error {
	if f.load == "" {
		return nil
	}
	file, err := os.Open(f.load)
	if err != nil {
		return usagef("--baseline: %v", err)
	}
	defer file.Close()
	err = eng.LoadBaselines(bufio.NewReaderSize(file, 1<<20))
	switch {
	case errors.Is(err, detect.ErrBadBaseline):
		return usagef("--baseline %s: %w", f.load, err)
	case err != nil && !quiet:
		fmt.Fprintf(stderr, "vigil replay: --baseline %s: partly loaded: %v\n", f.load, err)
	}
	return nil
}

// saveFrom writes eng's baselines to the --save-baseline file, through a
// temporary file in the same directory: the file is whole or unchanged.
func (f baselineFlags) saveFrom(eng *detect.Engine) error {
	if f.save == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.save), filepath.Base(f.save)+".*")
	if err != nil {
		return usagef("--save-baseline: %v", err)
	}
	defer os.Remove(tmp.Name())
	err = eng.SaveBaselines(tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.save)
	}
	if err != nil {
		return fmt.Errorf("--save-baseline %s: %w", f.save, err)
	}
	return nil
}
