package detect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"gopkg.in/yaml.v3"
)

// Catalog is every rule and list loaded from a set of rule files, before
// compilation.
type Catalog struct {
	Rules []RuleSpec
	Lists map[string][]string
}

// ParseRuleFile decodes one rule file strictly: an unknown field is an
// error with its line. name is used in messages.
func ParseRuleFile(name string, data []byte) (*Catalog, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f RuleFile
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c := &Catalog{Lists: f.Lists}
	if c.Lists == nil {
		c.Lists = map[string][]string{}
	}
	for i := range f.Rules {
		f.Rules[i].File = name
	}
	c.Rules = f.Rules
	return c, nil
}

// LoadFS loads every *.yaml and *.yml file under root in fsys, in name
// order. All file errors are returned together.
func LoadFS(fsys fs.FS, root string) (*Catalog, error) {
	var names []string
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && isRuleFile(p) {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read rules %s: %w", root, err)
	}
	sort.Strings(names)
	// Files parse on every core (a start-up cost of every command);
	// they merge in name order.
	type parsed struct {
		c   *Catalog
		err error
	}
	files := make([]parsed, len(names))
	parallel(len(names), func(i int) {
		data, err := fs.ReadFile(fsys, names[i])
		if err != nil {
			files[i].err = fmt.Errorf("read rules: %w", err)
			return
		}
		files[i].c, files[i].err = ParseRuleFile(names[i], data)
	})
	out := &Catalog{Lists: map[string][]string{}}
	var errs []error
	for _, f := range files {
		if f.err != nil {
			errs = append(errs, f.err)
			continue
		}
		if err := out.Merge(f.c); err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// parallel calls f(0) to f(n-1) on GOMAXPROCS goroutines and waits.
func parallel(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		})
	}
	wg.Wait()
}

// LoadPaths loads rule files and directories (recursively) from disk.
func LoadPaths(paths []string) (*Catalog, error) {
	out := &Catalog{Lists: map[string][]string{}}
	var errs []error
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("read rules: %w", err))
			continue
		}
		var c *Catalog
		if st.IsDir() {
			c, err = LoadFS(os.DirFS(p), ".")
			if c != nil {
				for i := range c.Rules {
					c.Rules[i].File = filepath.Join(p, c.Rules[i].File)
				}
			}
		} else {
			var data []byte
			if data, err = os.ReadFile(p); err == nil {
				c, err = ParseRuleFile(p, data)
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
		if c != nil {
			if err := out.Merge(c); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return out, errors.Join(errs...)
}

func isRuleFile(p string) bool {
	return strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")
}

// Merge adds other's rules and lists. A rule id defined twice is an error;
// lists of the same name are concatenated.
func (c *Catalog) Merge(other *Catalog) error {
	if c.Lists == nil {
		c.Lists = map[string][]string{}
	}
	var errs []error
	for _, r := range other.Rules {
		if i := c.index(r.ID); i >= 0 && r.ID != "" {
			errs = append(errs, fmt.Errorf("%s: rule %s: already defined in %s", r.File, r.ID, c.Rules[i].File))
			continue
		}
		c.Rules = append(c.Rules, r)
	}
	for name, items := range other.Lists {
		c.Lists[name] = append(c.Lists[name], items...)
	}
	return errors.Join(errs...)
}

func (c *Catalog) index(id string) int {
	return slices.IndexFunc(c.Rules, func(r RuleSpec) bool { return r.ID == id })
}

// Override changes a rule without copying it: set fields replace the rule's.
type Override struct {
	Enabled  *bool     `yaml:"enabled"`
	Severity *Severity `yaml:"severity"`
	// Count replaces window.count; Within and Cooldown the window's.
	Count    *int      `yaml:"count"`
	Within   *Duration `yaml:"within"`
	Cooldown *Duration `yaml:"cooldown"`
}

// ListOverride extends a named list, or replaces it when Replace is set. In
// YAML it is either a plain sequence (extend) or {replace: true, items: [...]}.
type ListOverride struct {
	Items   []string `yaml:"items"`
	Replace bool     `yaml:"replace"`
}

// UnmarshalYAML accepts a sequence or a mapping.
func (l *ListOverride) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		l.Replace = false
		return n.Decode(&l.Items)
	}
	type plain ListOverride
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*l = ListOverride(p)
	return nil
}

// Tune applies the user's lists, overrides and disabled ids. Naming a rule
// or list that does not exist is an error that suggests the closest name: a
// typo must not silently leave a rule untuned. A new list belongs in a rule
// file's lists:, next to the rules that use it.
func (c *Catalog) Tune(lists map[string]ListOverride, overrides map[string]Override, disable []string) error {
	var errs []error
	for _, name := range sortedKeys(lists) {
		if _, ok := c.Lists[name]; !ok {
			errs = append(errs, fmt.Errorf("lists.%s: no such list%s", name, suggest(name, sortedKeys(c.Lists))))
			continue
		}
		l := lists[name]
		if l.Replace {
			c.Lists[name] = slices.Clone(l.Items)
		} else {
			c.Lists[name] = append(c.Lists[name], l.Items...)
		}
	}
	for _, id := range sortedKeys(overrides) {
		o := overrides[id]
		i := c.index(id)
		if i < 0 {
			errs = append(errs, fmt.Errorf("overrides.%s: no such rule%s", id, suggest(id, c.ids())))
			continue
		}
		r := &c.Rules[i]
		if o.Enabled != nil {
			r.Enabled = o.Enabled
		}
		if o.Severity != nil {
			r.Severity = *o.Severity
		}
		if o.Count != nil || o.Within != nil || o.Cooldown != nil {
			if r.Window == nil {
				errs = append(errs, fmt.Errorf("overrides.%s: count, within and cooldown apply only to rules with a window", id))
				continue
			}
			w := *r.Window
			if o.Count != nil {
				w.Count = *o.Count
			}
			if o.Within != nil {
				w.Within = *o.Within
			}
			if o.Cooldown != nil {
				w.Cooldown = *o.Cooldown
			}
			r.Window = &w
		}
	}
	for _, id := range disable {
		i := c.index(id)
		if i < 0 {
			errs = append(errs, fmt.Errorf("disable %s: no such rule%s", id, suggest(id, c.ids())))
			continue
		}
		f := false
		c.Rules[i].Enabled = &f
	}
	return errors.Join(errs...)
}

func (c *Catalog) ids() []string {
	ids := make([]string, len(c.Rules))
	for i, r := range c.Rules {
		ids[i] = r.ID
	}
	return ids
}

// suggest returns " (did you mean NAME?)" for the candidate closest to
// name, or "" when there is none. Dashes and underscores count as the same
// character: list names use underscores, rule ids dashes.
func suggest(name string, candidates []string) string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	best, bestDist := "", 0
	for _, c := range candidates {
		if d := editDistance(norm(name), norm(c)); best == "" || d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
