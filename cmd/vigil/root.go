package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes, the same for every subcommand (docs/cli.md).
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
	exitGate    = 3
)

// usageError marks a usage or configuration error (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// gateError marks a tripped gate such as replay --fail-on (exit code 3).
type gateError struct{ msg string }

func (e gateError) Error() string { return e.msg }

// app is what every subcommand shares: its standard streams and logger.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// stdinIsPipe reports whether stdin is a pipe or file (not a terminal).
	stdinIsPipe bool
	// stderrIsTerminal enables progress lines.
	stderrIsTerminal bool
	logger           *slog.Logger
	// version is printed by vigil version.
	version string
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, version: version,
		logger: slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil {
			a.stdinIsPipe = st.Mode()&os.ModeCharDevice == 0
		}
	}
	if f, ok := stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil {
			a.stderrIsTerminal = st.Mode()&os.ModeCharDevice != 0
		}
	}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "vigil: %v\n", err)
	var ue usageError
	var ge gateError
	switch {
	case errors.As(err, &ge):
		return exitGate
	case errors.As(err, &ue):
		return exitUsage
	}
	return exitRuntime
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "vigil",
		Short: "Kubernetes audit-log stream analyzer",
		Long: `vigil detects attacks in Kubernetes audit events: live from the apiserver's
audit webhook (vigil serve), from audit log files (vigil replay), and it writes
the audit policy its rules need (vigil policy).

Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error, 3 a gate tripped.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.AddCommand(a.replayCmd(), a.rulesCmd(), a.versionCmd())
	for _, c := range a.extraCommands() {
		root.AddCommand(c)
	}
	return root
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(a.stdout, "vigil %s\n", a.version)
			return err
		},
	}
}

// noArgs rejects positional arguments as a usage error.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", c.CommandPath(), args)
	}
	return nil
}
