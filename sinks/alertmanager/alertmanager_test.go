package alertmanager_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/sinks/alertmanager"
	"github.com/vigil-k8s/vigil/sinks/sinktest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// server is an Alertmanager stand-in that keeps the bodies POSTed to
// /api/v2/alerts and answers as Alertmanager does (200, empty body).
func server(t *testing.T, status int) (*httptest.Server, func() [][]byte) {
	var mu sync.Mutex
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" {
			t.Errorf("got %s %s, want POST /api/v2/alerts", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		if a := r.Header.Get("Authorization"); a != "Bearer am-token" {
			t.Errorf("Authorization = %q", a)
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, func() [][]byte { mu.Lock(); defer mu.Unlock(); return append([][]byte(nil), bodies...) }
}

func TestSink_Send(t *testing.T) {
	am1, got1 := server(t, http.StatusOK)
	am2, got2 := server(t, http.StatusOK)
	s, err := alertmanager.New(alertmanager.Config{Name: "sec", URLs: []string{am1.URL, am2.URL + "/"},
		Headers: map[string]string{"Authorization": "Bearer am-token"}, GeneratorURL: "https://vigil.example/alerts"})
	if err != nil {
		t.Fatal(err)
	}
	if retry, err := s.Send(t.Context(), sinktest.Alerts()...); err != nil {
		t.Fatalf("Send: retry=%v err=%v", retry, err)
	}
	b1, b2 := got1(), got2()
	if len(b1) != 1 || len(b2) != 1 || string(b1[0]) != string(b2[0]) {
		t.Fatalf("each Alertmanager must get the same one POST: %d and %d", len(b1), len(b2))
	}
	sinktest.Golden(t, "testdata/alerts.golden.json", b1[0], *update)
	if err := validate(b1[0]); err != nil {
		t.Errorf("payload does not satisfy Alertmanager's v2 API: %v", err)
	}
	// A burst that stops resolves: endsAt lies after the last event.
	var alerts []alertmanager.PostableAlert
	if err := json.Unmarshal(b1[0], &alerts); err != nil {
		t.Fatal(err)
	}
	in := sinktest.Alerts()
	for i, a := range alerts {
		if !a.StartsAt.Equal(in[i].FirstTime) || !a.EndsAt.Equal(in[i].LastTime.Add(alertmanager.DefaultResolveAfter)) {
			t.Errorf("alert %d: startsAt %v endsAt %v", i, a.StartsAt, a.EndsAt)
		}
	}
	if l := alerts[0].Labels; l["alertname"] != "pod-exec" || l["mitre"] != "T1609" || l["namespace"] != "team-a" ||
		l["user"] != "kubernetes-admin" || l["cluster"] != "lab" || l["severity"] != "high" || l["fingerprint"] != in[0].Fingerprint {
		t.Errorf("labels %v", l)
	}
}

func TestSink_Send_oneDown(t *testing.T) {
	up, got := server(t, http.StatusOK)
	down, _ := server(t, http.StatusServiceUnavailable)
	s, err := alertmanager.New(alertmanager.Config{Name: "sec", URL: up.URL, URLs: []string{down.URL},
		Headers: map[string]string{"Authorization": "Bearer am-token"}})
	if err != nil {
		t.Fatal(err)
	}
	retry, err := s.Send(t.Context(), sinktest.Alerts()[0])
	if err == nil || !retry {
		t.Fatalf("retry=%v err=%v, want a retryable error while one instance is down", retry, err)
	}
	if len(got()) != 1 {
		t.Errorf("the healthy instance got %d POSTs, want 1", len(got()))
	}
}

// validate checks body against the published postableAlerts schema and
// against what Alertmanager's API handler checks beyond it (model.Alert's
// Validate: non-empty labels with valid names, startsAt before endsAt).
func validate(body []byte) error {
	raw, err := os.ReadFile("testdata/openapi-v2-alerts.yaml")
	if err != nil {
		return err
	}
	var spec struct {
		Definitions map[string]any `yaml:"definitions"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		return err
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return err
	}
	v := validator{defs: spec.Definitions}
	if err := v.check("$", doc, spec.Definitions["postableAlerts"]); err != nil {
		return err
	}
	labelName := regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	for i, a := range doc.([]any) {
		m := a.(map[string]any)
		labels := m["labels"].(map[string]any)
		if len(labels) == 0 {
			return fmt.Errorf("$[%d].labels: at least one label pair required", i)
		}
		for k, v := range labels {
			if !labelName.MatchString(k) {
				return fmt.Errorf("$[%d].labels: invalid name %q", i, k)
			}
			if v == "" {
				return fmt.Errorf("$[%d].labels.%s: empty value (Alertmanager drops it)", i, k)
			}
		}
		s, _ := time.Parse(time.RFC3339Nano, m["startsAt"].(string))
		e, _ := time.Parse(time.RFC3339Nano, m["endsAt"].(string))
		if e.Before(s) {
			return fmt.Errorf("$[%d]: endsAt before startsAt", i)
		}
	}
	return nil
}

// validator implements the part of Swagger 2.0 schemas the definitions
// use: $ref, allOf, type, properties, required, additionalProperties,
// items and the date-time and uri formats.
type validator struct{ defs map[string]any }

func (v validator) check(path string, doc any, schema any) error {
	s, ok := schema.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: bad schema %v", path, schema)
	}
	if ref, ok := s["$ref"].(string); ok {
		return v.check(path, doc, v.defs[strings.TrimPrefix(ref, "#/definitions/")])
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			if err := v.check(path, doc, sub); err != nil {
				return err
			}
		}
	}
	switch s["type"] {
	case "array":
		arr, ok := doc.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array, got %T", path, doc)
		}
		for i, e := range arr {
			if err := v.check(fmt.Sprintf("%s[%d]", path, i), e, s["items"]); err != nil {
				return err
			}
		}
	case "object":
		obj, ok := doc.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object, got %T", path, doc)
		}
		for _, r := range asSlice(s["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				return fmt.Errorf("%s: missing required %s", path, r)
			}
		}
		props, _ := s["properties"].(map[string]any)
		for k, val := range obj {
			if ps, ok := props[k]; ok {
				if err := v.check(path+"."+k, val, ps); err != nil {
					return err
				}
			} else if ap, ok := s["additionalProperties"]; ok {
				if err := v.check(path+"."+k, val, ap); err != nil {
					return err
				}
			}
		}
	case "string":
		str, ok := doc.(string)
		if !ok {
			return fmt.Errorf("%s: want a string, got %T", path, doc)
		}
		switch s["format"] {
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				return fmt.Errorf("%s: not a date-time: %v", path, err)
			}
		case "uri":
			if u, err := url.Parse(str); err != nil || !u.IsAbs() {
				return fmt.Errorf("%s: not an absolute URI", path)
			}
		}
	}
	return nil
}

func asSlice(v any) []any { s, _ := v.([]any); return s }
