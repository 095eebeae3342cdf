package ingest

import (
	"bytes"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/auditgen"
)

// FuzzDecode feeds the decoder real, generated and broken events: it must
// never panic, an event it accepts has an auditID, a stage and a time, and
// Truncate keeps such an event's identity without its bodies.
//
//	go test ./ingest -run '^$' -fuzz FuzzDecode -fuzztime 60s
func FuzzDecode(f *testing.F) {
	var seeds [][]byte
	seeds = append(seeds, realEvents(f)...)
	seeds = append(seeds, auditgen.Events(auditgen.Options{Seed: 7}, 50)...)
	for _, e := range seeds[:6] {
		seeds = append(seeds,
			e[:len(e)/2],                                   // truncated
			bytes.Replace(e, []byte(`"`), nil, 3),          // broken quoting
			bytes.ReplaceAll(e, []byte(`:`), []byte(`:[`)), // unbalanced
			append([]byte(`[`), append(bytes.Clone(e), ']')...),
			append(bytes.Clone(e), e...), // two events on one line
		)
	}
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `"x"`, `0`, `{"auditID":""}`,
		`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z"}`,
		`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37.Z"}`,
		`{"auditID":"a","stage":"s","verb":"v","stageTimestamp":"9999-99-99T99:99:99Z"}`,
		`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":{}}`,
		`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","user":[],"objectRef":"x","responseStatus":{"code":"200"},"sourceIPs":{},"annotations":[1]}`,
		`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","user":{"groups":[1,{},null],"extra":{"k":"notalist"}}}`,
		`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","requestObject":[{"a":[1,2,{"b":null}]}],"responseObject":"s"}`,
		`{"auditID":"a","stage":"s","verb":"v","requestObject":` + deepJSON(200) + `,"requestReceivedTimestamp":"2026-11-22T06:25:37Z"}`,
		`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","annotations":{"vigil.dev/truncated":"true","vigil.dev/source":"x"},"vigil":{"bodyUnparsed":true}}`,
		`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","requestObject":{"a":[1,{"b"`,
		`{"auditID":"a","stage":"s","verb":"v","requ\u0065stObject":{"x":1},"requestReceivedTimestamp":"2026-11-22T06:25:37Z"} trailing`,
		"{\"auditID\":\"\xff\xfe\",\"stage\":\"s\",\"verb\":\"v\",\"requestReceivedTimestamp\":\"2026-11-22T06:25:37Z\"}",
	} {
		seeds = append(seeds, []byte(s))
	}
	for _, s := range seeds {
		f.Add(s)
	}
	dec := Decoder{Annotations: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := dec.Decode(data)
		if err != nil {
			if ev != nil {
				t.Fatalf("Decode returned an event with error %v", err)
			}
			return
		}
		if ev.AuditID == "" || ev.Stage == "" || ev.Time().IsZero() {
			t.Fatalf("accepted an event without auditID, stage or time: %+v", ev)
		}
		ev.LoadObjects()
		c := ev.Clone()
		if c.AuditID != ev.AuditID || c.Stage != ev.Stage || !c.Time().Equal(ev.Time()) || c.Vigil != ev.Vigil {
			t.Fatalf("clone %+v differs from %+v", c, ev)
		}
		out, err := Truncate(data, 1<<30)
		if err != nil {
			t.Fatalf("Truncate of an event: %v", err)
		}
		tr, err := dec.Decode(out)
		if err != nil {
			t.Fatalf("Truncate gave %q, not an event: %v", out, err)
		}
		if tr.AuditID != c.AuditID || tr.Stage != c.Stage || tr.Verb != c.Verb || !tr.Vigil.Truncated || tr.HasRequestObject() || tr.HasResponseObject() {
			t.Fatalf("Truncate gave %+v for %+v", tr, c)
		}
	})
}

// FuzzParseTime checks the fast path of ParseTime against the standard
// library: both accept the same inputs and agree on the instant.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"2026-11-22T06:25:37.638648Z", "2026-11-22T06:25:37Z", "2026-11-22T06:25:37.1Z",
		"2026-11-22T07:25:37.5+01:00", "2026-12-31T23:59:59.999999999Z", "2024-02-29T00:00:00Z",
		"2026-11-22T06:25:37.Z", "2026-1-22T06:25:37Z", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTime([]byte(s))
		want, werr := time.Parse(time.RFC3339Nano, s)
		if (err == nil) != (werr == nil) {
			t.Fatalf("ParseTime(%q) = %v, %v; time.Parse = %v, %v", s, got, err, want, werr)
		}
		if err == nil && !got.Equal(want) {
			t.Fatalf("ParseTime(%q) = %v, time.Parse = %v", s, got, want)
		}
	})
}
