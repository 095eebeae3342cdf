package main

import (
	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/policies"
)

// ruleFlags are the flags every command that loads rules shares.
type ruleFlags struct {
	config    string
	rules     []string
	noBuiltin bool
	disable   []string
}

func (f *ruleFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.config, "config", "", "config file (YAML, see docs/config.md)")
	c.Flags().StringArrayVar(&f.rules, "rules", nil, "rule file or directory to add (repeatable)")
	c.Flags().BoolVar(&f.noBuiltin, "no-builtin", false, "do not load the built-in rule packs")
	c.Flags().StringArrayVar(&f.disable, "disable", nil, "rule id to disable (repeatable)")
}

// catalog loads the config, the built-in packs (unless disabled), the rule
// paths of config and flags, and applies lists, overrides and disables.
// Errors are usage errors: a bad rule file is a configuration problem.
func (f *ruleFlags) catalog() (*Config, *detect.Catalog, error) {
	cfg, err := loadConfig(f.config)
	if err != nil {
		return nil, nil, err
	}
	cat, err := f.loadRules(cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := f.tune(cfg, cat); err != nil {
		return nil, nil, err
	}
	return cfg, cat, nil
}

// loadRules loads the built-in packs (unless disabled) and the rule paths
// of cfg and the flags.
func (f *ruleFlags) loadRules(cfg *Config) (*detect.Catalog, error) {
	cat := &detect.Catalog{Lists: map[string][]string{}}
	if !f.noBuiltin && (cfg.Rules.Builtin == nil || *cfg.Rules.Builtin) {
		b, err := policies.LoadBuiltin()
		if err != nil {
			return nil, usageError{err}
		}
		cat = b
	}
	paths := append(append([]string{}, cfg.Rules.Paths...), f.rules...)
	if len(paths) > 0 {
		extra, err := detect.LoadPaths(paths)
		if err != nil {
			return nil, usageError{err}
		}
		if err := cat.Merge(extra); err != nil {
			return nil, usageError{err}
		}
	}
	return cat, nil
}

// tune applies the lists, overrides and disables of cfg and the flags.
func (f *ruleFlags) tune(cfg *Config, cat *detect.Catalog) error {
	disable := append(append([]string{}, cfg.Rules.Disable...), f.disable...)
	if err := cat.Tune(cfg.Lists, cfg.Overrides, disable); err != nil {
		return usageError{err}
	}
	return nil
}

// ruleSet loads and compiles the enabled rules.
func (f *ruleFlags) ruleSet() (*Config, *detect.RuleSet, error) {
	cfg, cat, err := f.catalog()
	if err != nil {
		return nil, nil, err
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		return nil, nil, usageError{err}
	}
	return cfg, rs, nil
}
