package policies_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/detect"
)

// falcoRow is one row of docs/falco-parity.md.
type falcoRow struct {
	falco string
	rules []string
	trace string
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readParity parses the parity table: Falco rule | priority | vigil rules |
// severity | trace | notes.
func readParity(t *testing.T) []falcoRow {
	t.Helper()
	data, err := os.ReadFile("../docs/falco-parity.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []falcoRow
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| Falco rule") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 6 {
			t.Fatalf("table row with %d cells: %s", len(cells), line)
		}
		r := falcoRow{falco: strings.TrimSpace(cells[0])}
		for _, m := range backticked.FindAllStringSubmatch(cells[2], -1) {
			r.rules = append(r.rules, m[1])
		}
		if m := backticked.FindStringSubmatch(cells[4]); m != nil {
			r.trace = m[1]
		}
		rows = append(rows, r)
	}
	return rows
}

func readTrace(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// TestFalcoParity replays the Falco-style traces of docs/falco-parity.md
// through every built-in rule: each named vigil rule fires on the trace and
// none of them on its near misses, and at least 90% of Falco's rules are
// covered.
func TestFalcoParity(t *testing.T) {
	_, rs := builtin(t)
	rows := readParity(t)
	if len(rows) != 48 {
		t.Errorf("%d rows, want one per Falco k8s_audit rule (48)", len(rows))
	}
	covered := 0
	used := map[string]bool{}
	for _, r := range rows {
		if len(r.rules) == 0 {
			continue
		}
		covered++
		if r.trace == "" {
			t.Errorf("%s: covered without a trace", r.falco)
			continue
		}
		used[r.trace] = true
		for _, id := range r.rules {
			if rs.Rule(id) == nil {
				t.Errorf("%s: no enabled built-in rule %s", r.falco, id)
			}
		}
		fired := func(file string) map[string]int {
			alerts, err := detect.Evaluate(rs, readTrace(t, filepath.Join("testdata", "falco", file)))
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			n := map[string]int{}
			for _, a := range alerts {
				n[a.Rule]++
			}
			return n
		}
		got := fired(r.trace + ".json")
		for _, id := range r.rules {
			if got[id] == 0 {
				t.Errorf("%s: %s did not fire on %s.json (fired: %v)", r.falco, id, r.trace, got)
			}
		}
		if _, err := os.Stat(filepath.Join("testdata", "falco", r.trace+".quiet.json")); err == nil {
			quiet := fired(r.trace + ".quiet.json")
			for _, id := range r.rules {
				if quiet[id] > 0 {
					t.Errorf("%s: %s fired on the near misses %s.quiet.json", r.falco, id, r.trace)
				}
			}
		}
	}
	if pct := covered * 100 / len(rows); pct < 90 {
		t.Errorf("%d of %d Falco rules covered (%d%%), want at least 90%%", covered, len(rows), pct)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "falco", "*.json"))
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(f), ".json"), ".quiet")
		if !used[name] {
			t.Errorf("%s is not named by any row of docs/falco-parity.md", f)
		}
	}
}
