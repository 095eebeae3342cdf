package envelope

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/logfile"
	"github.com/vigil-k8s/vigil/policies"
)

func builtinRules(t testing.TB) *detect.RuleSet {
	t.Helper()
	cat, err := policies.LoadBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Compile(cat)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// recording reads a shared real-apiserver recording's events.
func recording(t testing.TB, run string) [][]byte {
	t.Helper()
	r, err := logfile.Open([]string{filepath.Join("..", "..", "testdata", "real-apiserver", run, "audit.log.gz")}, nil, logfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	var out [][]byte
	for {
		b, err := r.Read(context.Background())
		for _, rec := range b.Records {
			out = append(out, bytes.Clone(rec.Data))
		}
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// detectAll runs the rules over a source and returns the alerts, sorted.
func detectAll(t testing.TB, rs *detect.RuleSet, src ingest.Source) []detect.Alert {
	t.Helper()
	var alerts []detect.Alert
	eng, err := detect.New(detect.Options{Rules: rs, Emit: func(a detect.Alert) error { alerts = append(alerts, a); return nil },
		OnReject: func(r ingest.Record, err error) { t.Errorf("%s: rejected: %v", r.Origin, err) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for {
		b, err := src.Read(ctx)
		if len(b.Records) > 0 {
			if perr := eng.Process(ctx, b); perr != nil {
				t.Fatal(perr)
			}
			if b.Ack != nil {
				b.Ack(ctx, nil)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := eng.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(alerts, func(a, b detect.Alert) int { return strings.Compare(a.Fingerprint, b.Fingerprint) })
	return alerts
}

// sliceSource serves events as one batch.
type sliceSource struct {
	events  [][]byte
	cluster string
	done    bool
}

func (s *sliceSource) Read(context.Context) (ingest.Batch, error) {
	if s.done {
		return ingest.Batch{}, io.EOF
	}
	s.done = true
	recs := make([]ingest.Record, len(s.events))
	for i, e := range s.events {
		recs[i] = ingest.Record{Data: e, Cluster: s.cluster, Origin: "event"}
	}
	return ingest.Batch{Records: recs}, nil
}

func (s *sliceSource) Close(context.Context) error { return nil }

// reduceToGKE keeps of an audit event what a GKE LogEntry carries
// (docs/sources.md lists the rest): no level, user uid, groups or extra,
// impersonated user, requestURI of resource requests, query of non-resource
// ones, objectRef uid or resourceVersion, sourceIPs past the first,
// stageTimestamp, HTTP code within its class (through the gRPC code),
// status reason, or bodies that are not objects.
func reduceToGKE(t testing.TB, event []byte) []byte {
	var m map[string]any
	if err := json.Unmarshal(event, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"level", "impersonatedUser", "stageTimestamp"} {
		delete(m, k)
	}
	if u, ok := m["user"].(map[string]any); ok {
		m["user"] = map[string]any{"username": u["username"]}
	}
	if or, ok := m["objectRef"].(map[string]any); ok {
		delete(m, "requestURI")
		delete(or, "uid")
		delete(or, "resourceVersion")
		if or["resource"] == "namespaces" {
			delete(or, "namespace")
		}
	} else if uri, ok := m["requestURI"].(string); ok {
		m["requestURI"], _, _ = strings.Cut(uri, "?")
	}
	if ips, ok := m["sourceIPs"].([]any); ok && len(ips) > 1 {
		m["sourceIPs"] = ips[:1]
	}
	if rs, ok := m["responseStatus"].(map[string]any); ok {
		code, _ := rs["code"].(float64)
		g := GRPCFromHTTP(int(code))
		out := map[string]any{"code": HTTPFromGRPC(g)}
		if msg, ok := rs["message"].(string); ok && g != 0 && msg != "" {
			out["message"] = msg
		}
		m["responseStatus"] = out
	}
	for _, k := range []string{"requestObject", "responseObject"} {
		if _, ok := m[k].(map[string]any); !ok {
			delete(m, k)
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRecordings_SameAlertsInEveryEnvelope converts the real-apiserver
// recordings to each provider's envelope and replays them: the alerts are
// those of the original events (for GKE, of the events reduced to what a
// LogEntry carries).
func TestRecordings_SameAlertsInEveryEnvelope(t *testing.T) {
	rs := builtinRules(t)
	for _, run := range []string{"run2", "run5"} {
		events := recording(t, run)
		orig := detectAll(t, rs, &sliceSource{events: events, cluster: run})
		var reduced [][]byte
		for _, e := range events {
			reduced = append(reduced, reduceToGKE(t, e))
		}
		origGKE := detectAll(t, rs, &sliceSource{events: reduced, cluster: run})
		for _, p := range Providers {
			// One recording is read with the envelope detected, the other
			// with it forced.
			forced := Auto
			if run == "run5" {
				forced = p
			}
			t.Run(run+"/"+string(p)+"/"+string(forced), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "export")
				writeEnvelope(t, path, p, EncodeOptions{Cluster: run}, events)
				r, err := Open([]string{filepath.Dir(path)}, nil, Options{Format: forced,
					OnError: func(origin string, err error) error { t.Errorf("%s: %v", origin, err); return nil }})
				if err != nil {
					t.Fatal(err)
				}
				got := detectAll(t, rs, r)
				want := orig
				if p == GKE {
					want = origGKE
				}
				if len(want) < 100 {
					t.Fatalf("only %d alerts expected: the recording changed?", len(want))
				}
				compareAlerts(t, want, got)
				c := r.Counts()[p]
				if c.Events == 0 || c.Truncated != 0 || c.Bad != 0 {
					t.Errorf("counts %+v", c)
				}
			})
		}
		if testing.Verbose() {
			lost := map[string]int{}
			for _, a := range orig {
				lost[a.Rule]++
			}
			for _, a := range origGKE {
				lost[a.Rule]--
			}
			for rule, n := range lost {
				if n != 0 {
					t.Logf("%s on GKE: %+d alerts of %s (fields GKE does not carry)", run, -n, rule)
				}
			}
		}
	}
}

func writeEnvelope(t testing.TB, path string, p Format, opts EncodeOptions, events [][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	enc, err := NewEncoder(f, p, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := enc.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
}

func compareAlerts(t *testing.T, want, got []detect.Alert) {
	t.Helper()
	if len(want) != len(got) {
		t.Errorf("%d alerts, want %d", len(got), len(want))
	}
	for i := range min(len(want), len(got)) {
		w, _ := json.Marshal(want[i])
		g, _ := json.Marshal(got[i])
		if !bytes.Equal(w, g) {
			t.Errorf("alert %d:\n got %s\nwant %s", i, g, w)
			return
		}
	}
}
