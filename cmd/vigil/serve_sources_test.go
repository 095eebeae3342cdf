package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/ingest/envelope"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
)

func sourcesOf(t *testing.T, text string) ([]pipeline.Source, error) {
	t.Helper()
	var cfg Config
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatal(err)
	}
	f := ruleFlags{}
	_, rs, err := f.ruleSet()
	if err != nil {
		t.Fatal(err)
	}
	return buildSources(&cfg, t.TempDir(), nil, metrics.NewSet(), rs)
}

// TestBuildSources_DocsExample builds the sources of docs/sources.md's
// example.
func TestBuildSources_DocsExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "sources.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := parseBlocks("docs/sources.md", data)
	if err != nil || len(blocks) != 1 {
		t.Fatalf("%d marked blocks: %v", len(blocks), err)
	}
	t.Setenv("VIGIL_FIREHOSE_KEY", "k")
	text := strings.ReplaceAll(blocks[0].yamlText(), "${file:/etc/vigil/eventhub-connection-string}", "Endpoint=sb://x/")
	text = strings.ReplaceAll(text, "${env:VIGIL_FIREHOSE_KEY}", "k")
	srcs, err := sourcesOf(t, text)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range srcs {
		names = append(names, s.Name())
	}
	if got := strings.Join(names, ","); got != "gke-prod,aks-prod,eks-firehose,eks-poll" {
		t.Errorf("sources %s", got)
	}
}

func TestBuildSources_Errors(t *testing.T) {
	for _, c := range []struct{ name, config, want string }{
		{"unknown key", "sources:\n- {type: gke, project: p, subscripton: s}\n", "sources[0].subscripton: unknown field (line 2)"},
		{"missing field", "sources:\n- {type: gke, project: p}\n", "project and subscription are required"},
		{"unknown type", "sources:\n- {type: azure}\n", `type "azure": want one of gke, aks, eks-firehose, eks-cloudwatch`},
		{"same name", "sources:\n- {type: eks-firehose, listen: ':1', access_key: k}\n- {type: eks-firehose, listen: ':2', access_key: k}\n", "must be unique"},
		{"not a list", "sources: {type: gke}\n", "want a list of sources"},
		{"aks without secret", "sources:\n- {type: aks, brokers: [b:9093], event_hub: h}\n", "connection_string is required"},
		{"firehose without key", "sources:\n- {type: eks-firehose, listen: ':1'}\n", "access_key is required"},
	} {
		_, err := sourcesOf(t, c.config)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if srcs, err := sourcesOf(t, "cluster: c\n"); err != nil || len(srcs) != 0 {
		t.Errorf("no sources: %v %v", srcs, err)
	}
}

// TestServe_EKSFirehoseSource runs vigil serve with a Firehose source and
// posts a recording as Firehose delivers a subscription's messages: the
// alerts are those a replay of the recording raises, each once.
func TestServe_EKSFirehoseSource(t *testing.T) {
	lines := realEvents(t, "run2")
	dir := t.TempDir()
	addr := freePort(t)
	cfgPath := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfgPath, []byte("sources:\n- {type: eks-firehose, listen: \""+addr+"\", access_key: k3y}\n"), 0o600)
	s := startServe(t, filepath.Join(dir, "data"), "--config", cfgPath)
	opts := envelope.EncodeOptions{Cluster: "prod-eks"}
	var records []string
	for c := range slices.Chunk(lines, 50) {
		var evs []envelope.CloudWatchEvent
		for i, l := range c {
			evs = append(evs, envelope.CloudWatchEvent{ID: strconv.Itoa(len(records)*50 + i), Timestamp: 1, Message: string(l)})
		}
		records = append(records, base64.StdEncoding.EncodeToString(envelope.Gzip(envelope.EKSMessage(opts, evs))))
	}
	for i, c := range slices.Collect(slices.Chunk(records, 4)) {
		var recs []map[string]string
		for _, r := range c {
			recs = append(recs, map[string]string{"data": r})
		}
		body, _ := json.Marshal(map[string]any{"requestId": strconv.Itoa(i), "timestamp": 1, "records": recs})
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/firehose", bytes.NewReader(body))
		req.Header.Set("X-Amz-Firehose-Access-Key", "k3y")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	waitMetric(t, s.ops, "vigil_source_events_total", float64(len(lines)), 30*time.Second)
	waitMetric(t, s.ops, "vigil_serve_alerts_sent_total", 1, 30*time.Second)
	s.stop(t)
	got := alertKeys(parseAlerts(t, s.stdout.String()))

	log := filepath.Join(dir, "audit.log")
	os.WriteFile(log, append(bytes.Join(lines, []byte("\n")), '\n'), 0o600)
	code, out, errOut := vigil(t, "", "replay", "--cluster", "prod-eks", "-q", log)
	if code != 0 {
		t.Fatalf("replay: %d %s", code, errOut)
	}
	want := alertKeys(parseAlerts(t, out))
	if !slices.Equal(got, want) {
		t.Errorf("%d alerts from the Firehose source, %d from replay", len(got), len(want))
	}
}
