package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/sinks"
	"github.com/vigil-k8s/vigil/sinks/respond"
)

// responsesConsumer names the responder among the alert stream's
// consumers (durable consumer sink-respond).
const responsesConsumer = "respond"

// responseConfig decodes the config file's responses: section. Errors are
// usage errors with field paths.
func (c *Config) responseConfig() (respond.Config, error) {
	rc, err := respond.DecodeConfig(&c.Responses)
	if err != nil {
		return respond.Config{}, usageError{fmt.Errorf("config: %w", err)}
	}
	return rc, nil
}

// responsesFor decodes the responses: section and checks that its rule ids
// name enabled rules of rs.
func (c *Config) responsesFor(rs *detect.RuleSet) (respond.Config, error) {
	rc, err := c.responseConfig()
	if err != nil {
		return rc, err
	}
	ids := make([]string, len(rs.Rules))
	for i, r := range rs.Rules {
		ids[i] = r.Spec.ID
	}
	if err := rc.CheckRuleIDs(ids); err != nil {
		return respond.Config{}, usageError{fmt.Errorf("config: %w", err)}
	}
	return rc, nil
}

// journalPath is where records go: the config's responses.journal, else
// DATA-DIR/responses.jsonl.
func journalPath(rc respond.Config, dataDir string) string {
	return cmp.Or(rc.Journal, filepath.Join(dataDir, "responses.jsonl"))
}

// serveResponder builds the responder of vigil serve, or nil when the
// config has no responses rules. The caller hands it to buildSinks
// (sinkSetup.responder), then calls Start with the dispatcher.
func (a *app) serveResponder(cfg *Config, rs *detect.RuleSet, dataDir string, set *metrics.Set) (*respond.Responder, error) {
	rc, err := cfg.responsesFor(rs)
	if err != nil || len(rc.Rules) == 0 {
		return nil, err
	}
	rest, err := respond.RESTConfig(rc.Kubeconfig)
	if err != nil {
		return nil, usagef("responses: %v", err)
	}
	cluster, err := respond.NewCluster(rest)
	if err != nil {
		return nil, err
	}
	j, err := respond.OpenJournal(journalPath(rc, dataDir), respond.JournalOptions{Sync: true})
	if err != nil {
		return nil, err
	}
	for _, b := range j.Bad {
		a.logger.Warn("journal line skipped", "where", b)
	}
	r, err := respond.New(rc, respond.Options{Cluster: cluster, Journal: j, Metrics: set,
		Logger: a.logger.With("component", "respond")})
	if err != nil {
		j.Close()
		return nil, usageError{err}
	}
	return r, nil
}

// replayActions wraps replay's output for --actions-output: every alert
// also goes through the config's responses, planned (always dry-run, no
// cluster) into FILE as JSON lines. With no path it returns send and
// closeOutput as they are.
func (a *app) replayActions(ctx context.Context, cfg *Config, rs *detect.RuleSet, path string, send func(detect.Alert) error,
	closeOutput func(context.Context) error) (func(detect.Alert) error, func(context.Context) error, error) {
	if path == "" {
		return send, closeOutput, nil
	}
	// On failure the output opened before is closed here: the caller
	// only defers closing what this returns.
	fail := func(err error) (func(detect.Alert) error, func(context.Context) error, error) {
		return nil, nil, errors.Join(err, closeOutput(context.WithoutCancel(ctx)))
	}
	rc, err := cfg.responsesFor(rs)
	if err != nil {
		return fail(err)
	}
	if len(rc.Rules) == 0 {
		return fail(usagef("--actions-output: the config has no responses rules to plan"))
	}
	j, err := respond.OpenJournal(path, respond.JournalOptions{Truncate: true})
	if err != nil {
		return fail(usagef("--actions-output: %v", err))
	}
	// Rate limits count in alert time: the plan shows what would have
	// happened live, not how fast the replay ran.
	r, err := respond.New(rc, respond.Options{Journal: j, DryRun: true,
		Clock: func(al *detect.Alert) time.Time { return al.Time }})
	if err != nil {
		j.Close()
		return fail(usageError{err})
	}
	r.Start(nil)
	var once sync.Once
	var cerr error
	return func(al detect.Alert) error {
			// The records name what sinks see: the redacted alert.
			if _, err := r.Handle(ctx, sinks.Redact(al)); err != nil {
				return fmt.Errorf("plan responses: %w", err)
			}
			return send(al)
		}, func(ctx context.Context) error {
			once.Do(func() { cerr = errors.Join(closeOutput(ctx), r.Close()) })
			return cerr
		}, nil
}

func (a *app) respondCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "respond",
		Short: "Response actions: their RBAC, their journal, undo",
		Long: `vigil serve runs the responses: rules of the config on every alert (dry-run
unless an action says enforce: true) and records each action in its journal
(DATA-DIR/responses.jsonl). These commands print the RBAC the actions need,
list the journal and undo an action. See docs/responses.md.`,
	}
	c.AddCommand(a.respondRBACCmd(), a.respondListCmd(), a.respondUndoCmd())
	return c
}

func (a *app) respondRBACCmd() *cobra.Command {
	var config, ns, sa string
	var all bool
	c := &cobra.Command{
		Use:   "rbac",
		Short: "Print the least ClusterRole and binding the enabled actions need",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := loadConfig(config)
			if err != nil {
				return err
			}
			rc, err := cfg.responseConfig()
			if err != nil {
				return err
			}
			actions := rc.Enabled()
			if all {
				actions = respond.AllActions()
			}
			if len(actions) == 0 {
				return usagef("the config has no responses rules: give --config, or --all for every action")
			}
			ns = cmp.Or(ns, rc.Protect.Self.Namespace, respond.DefaultSelfNamespace)
			sa = cmp.Or(sa, rc.Protect.Self.ServiceAccount, respond.DefaultServiceAccount)
			out, err := respond.RBAC(actions, ns, sa)
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(out)
			return err
		},
	}
	fl := c.Flags()
	fl.StringVar(&config, "config", "", "config file whose responses: rules enable the actions")
	fl.BoolVar(&all, "all", false, "every action, whatever the config enables")
	fl.StringVar(&ns, "namespace", "", "namespace of vigil's service account (default: responses.protect.self, else vigil)")
	fl.StringVar(&sa, "service-account", "", "vigil's service account (default: responses.protect.self, else vigil)")
	return c
}

// journalFlags locate the journal and the config.
type journalFlags struct {
	config, journal, dataDir string
}

func (f *journalFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.config, "config", "", "config file (its responses: section)")
	c.Flags().StringVar(&f.journal, "journal", "", "journal file (default: responses.journal, else DATA-DIR/responses.jsonl)")
	c.Flags().StringVar(&f.dataDir, "data-dir", "./vigil-data", "vigil serve's data dir")
}

func (f *journalFlags) load() (*Config, respond.Config, string, error) {
	cfg, err := loadConfig(f.config)
	if err != nil {
		return nil, respond.Config{}, "", err
	}
	rc, err := cfg.responseConfig()
	if err != nil {
		return nil, respond.Config{}, "", err
	}
	return cfg, rc, cmp.Or(f.journal, journalPath(rc, f.dataDir)), nil
}

func (a *app) respondListCmd() *cobra.Command {
	var f journalFlags
	c := &cobra.Command{
		Use:   "list",
		Short: "List the journal's actions, newest last",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, _, path, err := f.load()
			if err != nil {
				return err
			}
			recs, bad, err := respond.ReadJournal(path)
			if err != nil {
				return usageError{err}
			}
			tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tID\tACTION\tMODE\tSTATUS\tTARGET\tALERT")
			for _, r := range recs {
				if r.Status == respond.StatusStarted {
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.UTC().Format(time.RFC3339), r.ID, r.Action,
					r.Mode, r.Status, r.Target, cmp.Or(r.Alert.Rule, "-"))
			}
			for _, b := range bad {
				fmt.Fprintf(a.stderr, "vigil: skipped %s\n", b)
			}
			return tw.Flush()
		},
	}
	f.register(c)
	return c
}

func (a *app) respondUndoCmd() *cobra.Command {
	var f journalFlags
	var kubeconfig string
	c := &cobra.Command{
		Use:   "undo ID...",
		Short: "Put back what actions changed",
		Long: `Undo reverts done actions of the journal: it restores the state each record
kept (the binding, the replica count, the labels ...) and appends an undo
record, which also goes to the config's sinks. Dry-run actions changed
nothing; an action is undone once.`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("give the IDs of the actions to undo (vigil respond list shows them)")
			}
			return nil
		},
		RunE: func(c *cobra.Command, ids []string) error { return a.undo(c.Context(), f, kubeconfig, ids) },
	}
	f.register(c)
	c.Flags().StringVar(&kubeconfig, "kubeconfig", "", "cluster credentials (default: responses.kubeconfig, in-cluster, $KUBECONFIG, ~/.kube/config)")
	return c
}

func (a *app) undo(ctx context.Context, f journalFlags, kubeconfig string, ids []string) error {
	cfg, rc, path, err := f.load()
	if err != nil {
		return err
	}
	rest, err := respond.RESTConfig(cmp.Or(kubeconfig, rc.Kubeconfig))
	if err != nil {
		return usageError{err}
	}
	cluster, err := respond.NewCluster(rest)
	if err != nil {
		return err
	}
	j, err := respond.OpenJournal(path, respond.JournalOptions{Sync: true})
	if err != nil {
		return usageError{err}
	}
	defer j.Close()
	var events *sinks.Dispatcher
	if sc, err := cfg.sinkConfig(); err != nil {
		return err
	} else if len(sc.Sinks) > 0 {
		if events, err = a.buildSinks(ctx, cfg, sinkSetup{}); err != nil {
			return err
		}
		defer events.Close(context.WithoutCancel(ctx))
	}
	var errs []error
	for _, id := range ids {
		u, err := respond.Undo(ctx, cluster, j, rc, id, time.Now().UTC())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(a.stdout, "%s: %s %s: %s\n", id, u.Action, u.Target, u.Detail)
		if events != nil {
			if err := events.Dispatch(ctx, respond.EventAlert(u, nil)); err != nil {
				errs = append(errs, fmt.Errorf("event of undo %s: %w", id, err))
			}
		}
	}
	return errors.Join(errs...)
}

// actionsOutputUsage is the help line replay's --actions-output flag shows.
const actionsOutputUsage = "also plan the config's responses for every alert (dry-run, no cluster) and write them to FILE as JSON lines"
