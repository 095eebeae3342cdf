package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/policies/auditpolicy"
)

func (a *app) policyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "Write and check the kube-apiserver audit policy the rules need",
		Long: `A detection is blind unless the apiserver's audit policy records the events it
reads at the level it needs. generate writes that policy from the enabled
rules; check says what any policy leaves of each detection (docs/policy.md).`,
	}
	c.AddCommand(a.policyGenerateCmd(), a.policyCheckCmd())
	return c
}

func (a *app) policyGenerateCmd() *cobra.Command {
	var (
		f       ruleFlags
		samples []string
		output  string
	)
	c := &cobra.Command{
		Use:   "generate",
		Short: "Write the smallest audit policy that gives every enabled detection its level",
		Long: `generate merges the audit blocks of the enabled rules into an audit.k8s.io/v1
Policy, on top of safe defaults (no RequestReceived stage; secrets, configmaps,
tokenreviews and serviceaccounts/token at Metadata at most; health probes,
kube-proxy and kubelet reads, leases and events reads at None unless a rule
needs them; Metadata for the rest). It verifies the policy with the
apiserver's evaluator against every rule's fire fixtures and fails, writing
nothing, when a rule's audit block does not cover its own fixtures.

The policy goes to stdout, or to --output. The report goes to stderr.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, rs, err := f.ruleSet()
			if err != nil {
				return err
			}
			g, err := auditpolicy.Generate(rs)
			if err != nil {
				return fmt.Errorf("generate audit policy: %w", err)
			}
			var broken []string
			for _, v := range g.Report.Verdicts {
				byDesign := len(g.Degraded[v.Rule]) > 0
				if v.Status == auditpolicy.Blind || (v.Status == auditpolicy.Degraded && !byDesign) {
					broken = append(broken, v.Rule)
				}
			}
			if len(broken) > 0 {
				_ = g.Report.WriteText(a.stderr)
				return usagef("the audit blocks of %s do not cover their own fire fixtures (see above): fix the rules and generate again",
					strings.Join(broken, ", "))
			}
			out, err := g.Marshal()
			if err != nil {
				return err
			}
			if output == "" {
				if _, err := a.stdout.Write(out); err != nil {
					return fmt.Errorf("write audit policy: %w", err)
				}
			} else if err := os.WriteFile(output, out, 0o644); err != nil {
				return fmt.Errorf("write audit policy: %w", err)
			}
			rep := g.Report
			fmt.Fprintf(a.stderr, "audit policy: %d rules for %d detections: %d covered, %d degraded on purpose, %d unverified\n",
				len(g.Policy.Rules), len(rep.Verdicts), rep.Count(auditpolicy.Covered), rep.Count(auditpolicy.Degraded), rep.Count(auditpolicy.Unverified))
			for _, v := range rep.Verdicts {
				if v.Status != auditpolicy.Covered {
					fmt.Fprintf(a.stderr, "  %s %s: %s\n", v.Status, v.Rule, strings.Join(v.Reasons, "; "))
				}
				for _, w := range v.Warnings {
					fmt.Fprintf(a.stderr, "  warning %s: %s\n", v.Rule, w)
				}
			}
			if len(samples) == 0 {
				return nil
			}
			p, err := auditpolicy.FromV1(g.Policy)
			if err != nil {
				return fmt.Errorf("BUG: generated policy does not load: %w", err)
			}
			return a.sample(c.Context(), p, samples, a.stderr)
		},
	}
	f.register(c)
	c.Flags().StringArrayVar(&samples, "sample", nil, "audit log (JSON lines, gzip ok, - for stdin) to estimate what the policy keeps (repeatable)")
	c.Flags().StringVarP(&output, "output", "o", "", "write the policy to this file instead of stdout")
	return c
}

func (a *app) policyCheckCmd() *cobra.Command {
	var (
		f        ruleFlags
		samples  []string
		strict   bool
		provider string
	)
	c := &cobra.Command{
		Use:   "check FILE | --provider eks|gke|aks|aks-admin",
		Short: "Say which detections a policy leaves blind or degraded",
		Long: `check loads an audit policy strictly (an unknown field is an error, unlike in
kube-apiserver, which ignores it) and lists for each enabled detection whether
the policy covers it, records its events below the level it needs (degraded)
or not at all (blind), with the reason. It flags policy rules that record the
bodies of secrets, configmaps, tokenreviews or serviceaccounts/token.

With --provider it checks a managed service's fixed audit pipeline instead of
a file: the policy its API servers run (as the provider documents it) and,
for GKE, what its log entries carry of each event; a rule that reads a field
the log drops is blind there (docs/sources.md).

Exit codes: 3 when a high or critical detection is blind (with --strict also
when one is degraded or a rule records credentials), 2 when the policy cannot
be read or is invalid.`,
		Args: func(c *cobra.Command, args []string) error {
			if provider != "" {
				if len(args) != 0 {
					return usagef("%s takes a policy file or --provider, not both", c.CommandPath())
				}
				return nil
			}
			if len(args) != 1 {
				return usagef("%s takes one policy file, got %d arguments", c.CommandPath(), len(args))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if provider != "" {
				return a.checkProvider(f, provider, strict)
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return usagef("read audit policy: %w", err)
			}
			p, err := auditpolicy.Load(data)
			if err != nil {
				return usagef("%s: %w", args[0], err)
			}
			_, rs, err := f.ruleSet()
			if err != nil {
				return err
			}
			rep, err := auditpolicy.Check(p, rs)
			if err != nil {
				return fmt.Errorf("check audit policy: %w", err)
			}
			if err := rep.WriteText(a.stdout); err != nil {
				return err
			}
			if len(samples) > 0 {
				if err := a.sample(c.Context(), p, samples, a.stdout); err != nil {
					return err
				}
			}
			var trips []string
			for _, v := range rep.Tripped(strict) {
				trips = append(trips, fmt.Sprintf("%s (%s, %s)", v.Rule, v.Severity, v.Status))
			}
			if strict && len(rep.Sensitive) > 0 {
				trips = append(trips, fmt.Sprintf("%d policy rules recording credentials", len(rep.Sensitive)))
			}
			if len(trips) > 0 {
				return gateError{fmt.Sprintf("policy check %s failed: %s", args[0], strings.Join(trips, ", "))}
			}
			return nil
		},
	}
	f.register(c)
	c.Flags().StringArrayVar(&samples, "sample", nil, "audit log (JSON lines, gzip ok, - for stdin) to estimate what the policy keeps (repeatable)")
	c.Flags().BoolVar(&strict, "strict", false, "also fail on degraded high or critical detections and on recorded credentials")
	c.Flags().StringVar(&provider, "provider", "", "check a managed service's audit pipeline: eks, gke, aks or aks-admin (AKS's kube-audit-admin category)")
	return c
}

// checkProvider reports what a managed service's audit pipeline leaves of
// each enabled detection.
func (a *app) checkProvider(f ruleFlags, name string, strict bool) error {
	pr, err := auditpolicy.LoadProvider(name)
	if err != nil {
		return usagef("--provider: %v", err)
	}
	_, rs, err := f.ruleSet()
	if err != nil {
		return err
	}
	rep, err := auditpolicy.CheckProvider(pr, rs)
	if err != nil {
		return fmt.Errorf("check %s audit pipeline: %w", name, err)
	}
	fmt.Fprintf(a.stdout, "%s audit pipeline: policy from %s\n", strings.ToUpper(name), pr.Doc)
	if len(pr.Lost) > 0 {
		fmt.Fprintf(a.stdout, "  not carried by its log: %s\n", strings.Join(pr.Lost, "; "))
	}
	for _, n := range pr.Notes {
		fmt.Fprintf(a.stdout, "  note: %s\n", n)
	}
	if err := rep.WriteText(a.stdout); err != nil {
		return err
	}
	var trips []string
	for _, v := range rep.Tripped(strict) {
		trips = append(trips, fmt.Sprintf("%s (%s, %s)", v.Rule, v.Severity, v.Status))
	}
	if len(trips) > 0 {
		return gateError{fmt.Sprintf("%s cannot serve: %s", strings.ToUpper(name), strings.Join(trips, ", "))}
	}
	return nil
}

// sample runs audit logs through a policy and prints what it keeps.
func (a *app) sample(ctx context.Context, p *auditpolicy.Policy, files []string, w io.Writer) error {
	var st auditpolicy.SampleStats
	for _, name := range files {
		var r io.Reader
		if name == "-" {
			r = a.stdin
		} else {
			f, err := os.Open(name)
			if err != nil {
				return usagef("open sample: %w", err)
			}
			defer f.Close()
			r = f
		}
		if err := p.Sample(ctx, r, name, &st); err != nil {
			return err
		}
	}
	if st.Events == 0 {
		return usagef("sample %s holds no audit events (%d lines skipped: %s)", strings.Join(files, ", "), st.Skipped, st.FirstSkip)
	}
	return st.WriteText(w)
}
