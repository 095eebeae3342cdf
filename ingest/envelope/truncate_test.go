package envelope

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fastjson"

	"github.com/vigil-k8s/vigil/ingest"
)

// bigEvent returns a recorded pod create with a last-applied annotation of
// n bytes in its request body, as kubectl apply writes it; the fields keep
// the API server's order.
func bigEvent(t *testing.T, events [][]byte, n int) []byte {
	t.Helper()
	var p fastjson.Parser
	var a fastjson.Arena
	for _, e := range events {
		v, err := p.ParseBytes(e)
		if err != nil {
			t.Fatal(err)
		}
		md := v.Get("requestObject", "metadata")
		if string(v.GetStringBytes("verb")) != "create" || string(v.GetStringBytes("objectRef", "resource")) != "pods" ||
			v.Get("objectRef", "subresource") != nil || md == nil {
			continue
		}
		ann := a.NewObject()
		ann.Set("kubectl.kubernetes.io/last-applied-configuration", a.NewString(strings.Repeat("x", n)))
		md.Set("annotations", ann)
		return v.MarshalTo(nil)
	}
	t.Fatal("no pod create with a body in the recording")
	return nil
}

// TestTruncated_CountedMarkedAndDetected cuts events at each provider's
// limit: every cut event is read from what was kept, marked, counted and
// goes through detection; none is dropped.
func TestTruncated_CountedMarkedAndDetected(t *testing.T) {
	events := recording(t, "run2")
	events = append(events, bigEvent(t, events, 300<<10))
	rs := builtinRules(t)
	for _, p := range []Format{EKS, AKS} {
		t.Run(string(p), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "export")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			enc, _ := NewEncoder(f, p, EncodeOptions{Cluster: "c1", Cut: true})
			for _, e := range events {
				if err := enc.Write(e); err != nil {
					t.Fatal(err)
				}
			}
			enc.Close()
			f.Close()
			if enc.Cut == 0 {
				t.Fatal("nothing was cut")
			}
			var truncated []Item
			r, err := Open([]string{path}, nil, Options{OnTruncated: func(it Item) { truncated = append(truncated, it) },
				OnError: func(o string, err error) error { t.Errorf("%s: %v", o, err); return nil }})
			if err != nil {
				t.Fatal(err)
			}
			alerts := detectAll(t, rs, r)
			c := r.Counts()[p]
			if c.Truncated != enc.Cut || len(truncated) != enc.Cut || c.Events != len(events) {
				t.Fatalf("counts %+v, %d reported; %d cut of %d events", c, len(truncated), enc.Cut, len(events))
			}
			if len(alerts) == 0 {
				t.Error("no alerts from the cut recording")
			}
			var dec ingest.Decoder
			dec.Annotations = true
			for _, it := range truncated {
				ev, err := dec.Decode(it.Data)
				if err != nil {
					t.Fatalf("%s: %v", it.Origin, err)
				}
				if ev.Annotations[AnnotationTruncated] != "true" || ev.Annotations[AnnotationSource] != string(p) {
					t.Errorf("%s: annotations %v", it.Origin, ev.Annotations)
				}
				if ev.AuditID == "" || ev.Verb == "" || ev.Time().IsZero() || it.Lost == "" || it.Cluster != "c1" {
					t.Errorf("%s: metadata lost: %+v (lost at %q)", it.Origin, ev, it.Lost)
				}
			}
		})
	}
}

// TestTruncated_CutFileAndCutEnvelopes reads records an interrupted writer
// or a transport cut: the cut ones are salvaged or reported, never
// dropped silently, and the records after them are read.
func TestTruncated_CutFileAndCutEnvelopes(t *testing.T) {
	events := recording(t, "run2")[:40]
	var gke bytes.Buffer
	enc, _ := NewEncoder(&gke, GKE, EncodeOptions{Cluster: "g"})
	for _, e := range events {
		enc.Write(e)
	}
	enc.Close()
	lines := bytes.Split(bytes.TrimSpace(gke.Bytes()), []byte{'\n'})
	// Line 3 loses its last field, line 5 is cut before any complete
	// member, line 7 inside protoPayload (before the entry's ids).
	lines[2] = lines[2][:bytes.Index(lines[2], []byte(`"receiveTimestamp"`))+25]
	lines[4] = lines[4][:10]
	lines[6] = lines[6][:bytes.Index(lines[6], []byte(`"resourceName"`))+20]
	path := filepath.Join(t.TempDir(), "gke.json")
	os.WriteFile(path, append(bytes.Join(lines, []byte{'\n'}), '\n'), 0o644)

	var bad []string
	var truncated int
	r, err := Open([]string{path}, nil, Options{OnTruncated: func(Item) { truncated++ },
		OnError: func(o string, err error) error { bad = append(bad, o+": "+err.Error()); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	var recs []ingest.Record
	for {
		b, err := r.Read(context.Background())
		recs = append(recs, b.Records...)
		if err != nil {
			break
		}
	}
	if len(recs) != len(events)-2 || truncated != 1 || len(bad) != 2 || !strings.Contains(bad[0], "gke.json:5") ||
		!strings.Contains(bad[1], "gke.json:7: not an audit event or a known envelope: GKE entry cut before its operation.id") {
		t.Fatalf("%d records of %d, %d truncated, bad %q", len(recs), len(events), truncated, bad)
	}
	if !bytes.Contains(recs[2].Data, []byte(`"vigil.dev/truncated":"true"`)) {
		t.Errorf("record 3 not marked: %s", recs[2].Data)
	}
}
