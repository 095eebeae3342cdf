package main

import (
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
		Short: "List, test and lint detection rules",
	}
	c.AddCommand(a.rulesListCmd(), a.rulesTestCmd(), a.rulesLintCmd())
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
