// Package grafana tests the Grafana dashboard of vigil.
package grafana

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

var metricName = regexp.MustCompile(`vigil_[a-z0-9_]+`)

// documented is every metric name docs/metrics.md lists, or the pages it
// links for the other components' metrics list.
func documented(t *testing.T) map[string]bool {
	t.Helper()
	docs := filepath.Join("..", "..", "docs")
	main, err := os.ReadFile(filepath.Join(docs, "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{string(main)}
	for _, m := range regexp.MustCompile(`\]\(([a-z0-9-]+\.md)(#[^)]*)?\)`).FindAllStringSubmatch(string(main), -1) {
		b, err := os.ReadFile(filepath.Join(docs, m[1]))
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(b))
	}
	names := map[string]bool{}
	for _, text := range texts {
		for _, n := range metricName.FindAllString(text, -1) {
			names[n] = true
		}
	}
	return names
}

func TestDashboard(t *testing.T) {
	data, err := os.ReadFile("vigil.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("vigil.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 30 {
		t.Errorf("uid %q, title %q, schema %d: want both set and a current schema", d.UID, d.Title, d.SchemaVersion)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	if !slices.Contains(vars, "datasource") {
		t.Errorf("variables %v lack datasource", vars)
	}
	docs := documented(t)
	ids := map[int]bool{}
	queried := map[string]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: grid position %+v out of the 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") {
				t.Errorf("panel %q: unbalanced expression %s", p.Title, tg.Expr)
			}
			names := metricName.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: expression %s names no vigil metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				queried[n] = true
				base := n
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if s, ok := strings.CutSuffix(n, suffix); ok && docs[s] {
						base = s
					}
				}
				if !docs[base] {
					t.Errorf("panel %q queries %s, which docs/metrics.md does not list", p.Title, n)
				}
			}
		}
	}
	// What the dashboard is for.
	for _, want := range []string{"vigil_webhook_received_events_total", "vigil_queue_lag_seconds",
		"vigil_queue_partition_lag_seconds", "vigil_detect_rule_matches_total", "vigil_detect_alerts_total",
		"vigil_queue_partitions_owned", "vigil_queue_partitions_gained_total"} {
		if !queried[want] {
			t.Errorf("no panel queries %s", want)
		}
	}
}
