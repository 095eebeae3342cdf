package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/policies"
)

// docBlock is a fenced YAML example of README.md or docs/*.md marked as a
// whole file: ```yaml config or ```yaml rules (docs/README.md).
type docBlock struct {
	file string // relative to the repository root
	line int    // of the opening fence
	kind string
	text string
}

func (b docBlock) String() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

// yamlText is the block's text preceded by blank lines, so that the line
// numbers of YAML errors are those of the Markdown file.
func (b docBlock) yamlText() string { return strings.Repeat("\n", b.line) + b.text }

// markedBlocks returns the marked YAML blocks of the docs; an unknown mark
// is an error, so a misspelt one cannot leave an example untested.
func markedBlocks(t *testing.T) []docBlock {
	t.Helper()
	root := filepath.Join("..", "..")
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []docBlock
	for _, path := range append([]string{filepath.Join(root, "README.md")}, docs...) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, path)
		blocks, err := parseBlocks(filepath.ToSlash(rel), data)
		if err != nil {
			t.Error(err)
		}
		out = append(out, blocks...)
	}
	return out
}

func parseBlocks(file string, data []byte) ([]docBlock, error) {
	var out []docBlock
	var errs []error
	var cur *docBlock // the marked block being read
	inFence, indent, n := false, "", 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		switch {
		case inFence && strings.TrimSpace(line) == "```":
			if cur != nil {
				out = append(out, *cur)
			}
			inFence, cur = false, nil
		case inFence:
			if cur != nil {
				cur.text += strings.TrimPrefix(line, indent) + "\n"
			}
		case strings.HasPrefix(trimmed, "```"):
			inFence, indent = true, line[:len(line)-len(trimmed)]
			info := strings.Fields(strings.TrimPrefix(trimmed, "```"))
			if len(info) < 2 || info[0] != "yaml" {
				continue
			}
			if info[1] != "config" && info[1] != "rules" {
				errs = append(errs, fmt.Errorf("%s:%d: unknown example mark %q: want ```yaml config or ```yaml rules", file, n, info[1]))
				continue
			}
			cur = &docBlock{file: file, line: n, kind: info[1]}
		}
	}
	return out, errors.Join(errs...)
}

// TestDocs_Examples loads every marked example with vigil's own loaders.
func TestDocs_Examples(t *testing.T) {
	blocks := markedBlocks(t)
	kinds := map[string]int{}
	for _, b := range blocks {
		kinds[b.kind]++
		t.Run(b.String(), func(t *testing.T) {
			var err error
			if b.kind == "config" {
				err = checkConfigExample(t, b)
			} else {
				err = checkRulesExample(b)
			}
			if err != nil {
				t.Errorf("%s: yaml %s example does not load:\n%v", b, b.kind, err)
			}
		})
	}
	if kinds["config"] == 0 || kinds["rules"] == 0 {
		t.Errorf("found %v marked examples, want config and rules examples", kinds)
	}
}

// exampleSecret is what ${env:X} and ${file:P} of the examples hold: a URL,
// since some of them are sink URLs.
const exampleSecret = "https://hooks.example.invalid/secret"

// checkConfigExample loads a config example as vigil rules check does. Its
// secret files and rules.paths are created under a temporary root.
func checkConfigExample(t *testing.T, b docBlock) error {
	root := t.TempDir()
	text := b.yamlText()
	for _, m := range secretRef.FindAllStringSubmatch(text, -1) {
		if m[1] == "env" {
			t.Setenv(m[2], exampleSecret)
			continue
		}
		path := filepath.Join(root, m[2])
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(exampleSecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		text = strings.ReplaceAll(text, m[0], "${file:"+path+"}")
	}
	path := filepath.Join(root, "vigil.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	for i, p := range cfg.Rules.Paths {
		cfg.Rules.Paths[i] = filepath.Join(root, p)
		if err := os.MkdirAll(cfg.Rules.Paths[i], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	f := ruleFlags{config: path}
	_, err = f.check(cfg)
	return err
}

// checkRulesExample compiles a rule example with the built-in lists, as
// vigil rules lint and test would with --rules FILE, and runs its lint and
// fixtures.
func checkRulesExample(b docBlock) error {
	cat, err := detect.ParseRuleFile(b.file, []byte(b.yamlText()))
	if err != nil {
		return err
	}
	builtin, err := policies.LoadBuiltin()
	if err != nil {
		return err
	}
	all := &detect.Catalog{Lists: builtin.Lists}
	if err := all.Merge(cat); err != nil {
		return err
	}
	rs, err := detect.Compile(all)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range detect.Lint(all) {
		errs = append(errs, errors.New(p.String()))
	}
	var out bytes.Buffer
	if err := testRules(&out, rs, false); err != nil {
		errs = append(errs, fmt.Errorf("%w\n%s", err, out.String()))
	}
	return errors.Join(errs...)
}

// TestDocs_parseBlocks pins the marking convention.
func TestDocs_parseBlocks(t *testing.T) {
	md := "# t\n\n```yaml config\ncluster: a\n```\n\n```yaml\nnot: marked\n```\n\n" +
		"1. step\n   ```yaml rules\n   rules: []\n   ```\n\n```sh\n```yaml config\n```\n\n```yaml confg\nx: 1\n```\n"
	blocks, err := parseBlocks("t.md", []byte(md))
	want := []docBlock{
		{file: "t.md", line: 3, kind: "config", text: "cluster: a\n"},
		{file: "t.md", line: 12, kind: "rules", text: "rules: []\n"},
	}
	if fmt.Sprint(blocks) != fmt.Sprint(want) || len(blocks) != 2 || blocks[0].text != want[0].text || blocks[1].text != want[1].text {
		t.Errorf("blocks %+v, want %+v", blocks, want)
	}
	if err == nil || !strings.Contains(err.Error(), `t.md:20: unknown example mark "confg"`) {
		t.Errorf("misspelt mark: %v", err)
	}
}

// TestDocs_EveryConfigKeyHasAnExample: every key of the config file (and of
// its serve and queue sections) appears in a marked config example, so that
// a new key cannot go undocumented; the examples loading strictly covers the
// other direction. The sinks and routes sections are checked as a whole:
// sinks.md documents their keys per sink type.
func TestDocs_EveryConfigKeyHasAnExample(t *testing.T) {
	documented := map[string]bool{}
	for _, b := range markedBlocks(t) {
		if b.kind != "config" {
			continue
		}
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(b.text), &doc); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if len(doc.Content) > 0 {
			collectKeys(doc.Content[0], "", documented)
		}
	}
	want := map[string]bool{}
	configKeys(reflect.TypeFor[Config](), "", want)
	configKeys(reflect.TypeFor[ServeConfig](), "serve.", want)
	configKeys(reflect.TypeFor[QueueConfig](), "queue.", want)
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if !documented[k] {
			t.Errorf("config key %s appears in no ```yaml config example", k)
		}
	}
}

// collectKeys adds the key paths of a YAML mapping; the entries of lists
// and overrides are named by the user and collected as "*".
func collectKeys(n *yaml.Node, prefix string, out map[string]bool) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i].Value
		if prefix == "lists." || prefix == "overrides." {
			key = "*"
		}
		out[prefix+key] = true
		collectKeys(n.Content[i+1], prefix+key+".", out)
	}
}

// configKeys adds the key paths of the yaml fields of a config struct.
func configKeys(t reflect.Type, prefix string, out map[string]bool) {
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key, ft := prefix+name, f.Type
		out[key] = true
		if ft.Kind() == reflect.Map {
			key, ft = key+".*", ft.Elem()
			out[key] = true
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[yaml.Node]() && ft.PkgPath() != "time" {
			configKeys(ft, key+".", out)
		}
	}
}
