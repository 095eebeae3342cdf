package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/detect"
)

func (a *app) rulesCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "rules",
		Short: "List, test, lint and check detection rules",
	}
	c.AddCommand(a.rulesListCmd(), a.rulesTestCmd(), a.rulesLintCmd(), a.rulesCheckCmd())
	return c
}

func (a *app) rulesListCmd() *cobra.Command {
	var f ruleFlags
	var all bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List the enabled rules (with --all, the disabled ones too)",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, cat, err := f.catalog()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSEVERITY\tKIND\tLEVEL\tENABLED\tTITLE")
			for _, r := range cat.Rules {
				if !all && !r.IsEnabled() {
					continue
				}
				kind := "single"
				if r.Window != nil {
					kind = string(r.Window.Kind)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%s\n", r.ID, r.Severity, kind, r.Audit.Level, r.IsEnabled(), r.Title)
			}
			return tw.Flush()
		},
	}
	f.register(c)
	c.Flags().BoolVar(&all, "all", false, "include disabled rules")
	return c
}

func (a *app) rulesTestCmd() *cobra.Command {
	var f ruleFlags
	var verbose bool
	c := &cobra.Command{
		Use:   "test [PATH...]",
		Short: "Run every rule's fixtures; fail with a diff when one does not hold",
		Long: `Test runs the fire and quiet fixtures of every enabled rule, each rule alone.
PATH arguments are rule files or directories to test instead of the built-in
packs (the same as --no-builtin --rules PATH).`,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				f.noBuiltin = true
				f.rules = append(f.rules, args...)
			}
			_, rs, err := f.ruleSet()
			if err != nil {
				return err
			}
			return testRules(a.stdout, rs, verbose)
		},
	}
	f.register(c)
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "print every case, not only failures")
	return c
}

// testRules runs the fixtures and reports; a failure is a runtime error
// (exit 1) so CI fails.
func testRules(w io.Writer, rs *detect.RuleSet, verbose bool) error {
	results := detect.RunFixtures(rs)
	failed := 0
	for _, r := range results {
		kind := "quiet"
		if r.Fire {
			kind = "fire"
		}
		if r.Passed() {
			if verbose {
				fmt.Fprintf(w, "ok    %s %s %q\n", r.Rule, kind, r.Case)
			}
			continue
		}
		failed++
		fmt.Fprintf(w, "FAIL  %s (%s) %s case %q\n%s\n", r.Rule, r.File, kind, r.Case, indent(r.Diff(), "      "))
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", len(results)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d fixture cases failed", failed, len(results))
	}
	return nil
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

func (a *app) rulesLintCmd() *cobra.Command {
	var f ruleFlags
	c := &cobra.Command{
		Use:   "lint [PATH...]",
		Short: "Check rules: they compile, read only what their audit level records, and ship fixtures",
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				f.noBuiltin = true
				f.rules = append(f.rules, args...)
			}
			_, cat, err := f.catalog()
			if err != nil {
				return err
			}
			if _, err := detect.Compile(cat); err != nil {
				return usageError{err}
			}
			problems := detect.Lint(cat)
			for _, p := range problems {
				fmt.Fprintln(a.stdout, p)
			}
			if len(problems) > 0 {
				return usagef("%d problems in %d rules", len(problems), len(cat.Rules))
			}
			fmt.Fprintf(a.stdout, "%d rules ok\n", len(cat.Rules))
			return nil
		},
	}
	f.register(c)
	return c
}

func (a *app) rulesCheckCmd() *cobra.Command {
	var f ruleFlags
	c := &cobra.Command{
		Use:   "check",
		Short: "Load the config file and the rules as serve and replay do; report every error",
		Long: `Check reads the config file, loads the rules (built-in packs, rules.paths and
--rules), applies lists, overrides and disables, compiles the rules and decodes
the serve, queue, sinks and routes sections, as vigil serve and vigil replay do
at start. It starts nothing and opens no file but the config, the rule files
and the secrets the config references. Exit 0 with a one-line summary, or 2
with every error found.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := loadConfig(f.config)
			if err != nil {
				return err
			}
			summary, err := f.check(cfg)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, summary)
			return err
		},
	}
	f.register(c)
	return c
}

// check loads, tunes and compiles the rules of cfg and decodes its serve,
// queue, sinks and routes sections, with the code serve and replay run. It
// goes on after an error where what follows does not depend on it, and
// returns every error as one usage error.
func (f *ruleFlags) check(cfg *Config) (string, error) {
	var errs []error
	var rs *detect.RuleSet
	cat, err := f.loadRules(cfg)
	if err != nil {
		errs = append(errs, err)
	} else {
		// Compile even when tuning failed: an unknown name in the config
		// leaves the rules themselves intact.
		if err := f.tune(cfg, cat); err != nil {
			errs = append(errs, err)
		}
		if rs, err = detect.Compile(cat); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := serveConfig(cfg); err != nil {
		errs = append(errs, err)
	}
	sc, err := cfg.sinkConfig()
	if err == nil {
		if err = sc.Validate(); err != nil {
			err = fmt.Errorf("config: %w", err)
		}
	}
	if err != nil {
		errs = append(errs, err)
	}
	if rs != nil {
		_, err = cfg.responsesFor(rs)
	} else {
		_, err = cfg.responseConfig()
	}
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return "", usageError{err}
	}
	where := "no config file"
	if f.config != "" {
		where = f.config
	}
	return fmt.Sprintf("%s: ok: %d rules enabled, %d disabled, %d lists, %d sinks",
		where, len(rs.Rules), len(rs.Disabled), len(rs.Lists), len(sc.Sinks)), nil
}
