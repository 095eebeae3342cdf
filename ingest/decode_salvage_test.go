package ingest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// deepJSON nests a value n objects-in-arrays deep: 2n levels.
func deepJSON(n int) string {
	return strings.Repeat(`{"spec":[`, n) + `1` + strings.Repeat(`]}`, n)
}

const (
	meta = `"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete",` +
		`"requestURI":"/apis/example.com/v1/namespaces/n/widgets","verb":"create","user":{"username":"mallory","groups":["dev"]},` +
		`"sourceIPs":["10.0.0.9"],"userAgent":"kubectl/v1.34","objectRef":{"resource":"widgets","namespace":"n","name":"w1","apiGroup":"example.com"},` +
		`"responseStatus":{"code":201}`
	times = `"requestReceivedTimestamp":"2026-11-22T06:00:00.000001Z","stageTimestamp":"2026-11-22T06:00:00.000100Z"`
)

func TestDecoder_Salvage(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantReq bool   // requestObject kept
		wantErr string // "" when the event decodes, marked
	}{
		{"deep request body", `{` + meta + `,"requestObject":` + deepJSON(200) + `,"responseObject":{"kind":"Widget"},` + times + `}`, false, ""},
		{"deep response body", `{` + meta + `,"requestObject":{"kind":"Widget"},"responseObject":` + deepJSON(5000) + `,` + times + `}`, true, ""},
		{"just too deep", `{` + meta + `,` + times + `,"requestObject":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`, false, ""},
		{"cut after the times", `{` + meta + `,` + times + `,"annotations":{"authorization.k8s.io/deci`, false, ""},
		{"two events on a line", `{` + meta + `,` + times + `}{` + meta + `}`, false, ""},
		{"broken body", `{` + meta + `,` + times + `,"requestObject":{"a" 1},"annotations":{}}`, false, ""},
		{"cut in the body", `{` + meta + `,"requestObject":{"spec":{"containers":[{"name":"x"`, false, "what could be read of it: missing requestReceivedTimestamp"},
		{"deep and no auditID", `{"stage":"ResponseComplete","verb":"get","requestObject":` + deepJSON(200) + `,` + times + `}`, false, "missing auditID"},
		{"deep array", `[` + deepJSON(200) + `]`, false, "malformed JSON"},
		{"nothing readable", `{"requestObject":` + deepJSON(200) + `}`, false, "malformed JSON"},
		{"log text", `E1122 06:00:00 audit.go:1] {"auditID":"a1"}`, false, "malformed JSON"},
	}
	var d Decoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := d.Decode([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrNotEvent) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Decode = %+v, %v; want an error containing %q", ev, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !ev.Vigil.BodyUnparsed || ev.AuditID != "a1" || ev.Verb != "create" || ev.User.Username != "mallory" ||
				ev.ObjectRef.Name != "w1" || ev.ResponseStatus.Code != 201 || ev.SourceIPs[0] != "10.0.0.9" ||
				ev.RequestReceivedTimestamp.IsZero() || ev.StageTimestamp.IsZero() {
				t.Fatalf("salvaged %+v", ev)
			}
			if ev.HasRequestObject() != tt.wantReq {
				t.Errorf("HasRequestObject = %v, want %v", ev.HasRequestObject(), tt.wantReq)
			}
			ev.LoadObjects()
			if tt.wantReq && ev.RequestObject.(map[string]any)["kind"] != "Widget" {
				t.Errorf("requestObject = %v", ev.RequestObject)
			}
			if ev.HasResponseObject() && tt.name == "deep response body" {
				t.Error("the deep response body was kept")
			}
		})
	}
	// The deepest body the parser reads is whole; the next event is not
	// marked.
	ev, err := d.Decode([]byte(`{` + meta + `,` + times + `,"requestObject":` + strings.Repeat("[", 299) + strings.Repeat("]", 299) + `}`))
	if err != nil || ev.Vigil != (Marks{}) || !ev.HasRequestObject() {
		t.Fatalf("whole event after a salvaged one: %+v, %v", ev, err)
	}
}

func TestDecoder_Marks(t *testing.T) {
	tests := []struct {
		name, annotations string
		want              Marks
	}{
		{"none", `{"authorization.k8s.io/decision":"allow"}`, Marks{}},
		{"truncated by vigil", `{"vigil.dev/truncated":"true","vigil.dev/source":"eks"}`, Marks{Truncated: true, Source: "eks"}},
		{"truncated by the apiserver", `{"audit.k8s.io/truncated":"true"}`, Marks{Truncated: true}},
		{"not true", `{"vigil.dev/truncated":"false","audit.k8s.io/truncated":"yes"}`, Marks{}},
		{"not an object", `["vigil.dev/truncated"]`, Marks{}},
	}
	for _, withMap := range []bool{false, true} {
		d := Decoder{Annotations: withMap}
		for _, tt := range tests {
			ev, err := d.Decode([]byte(`{` + meta + `,` + times + `,"annotations":` + tt.annotations + `}`))
			if err != nil {
				t.Fatal(err)
			}
			if ev.Vigil != tt.want {
				t.Errorf("%s (annotations map %v): marks %+v, want %+v", tt.name, withMap, ev.Vigil, tt.want)
			}
			if wantMap := withMap && tt.annotations[0] == '{'; wantMap != (ev.Annotations != nil) {
				t.Errorf("%s: annotations %v with Decoder.Annotations %v", tt.name, ev.Annotations, withMap)
			}
		}
	}
}

// TestDecoder_MarksRoundTrip checks that an event serialized as vigil
// stores it (window snapshots) decodes to the same marks, and that a clone
// keeps them.
func TestDecoder_MarksRoundTrip(t *testing.T) {
	var d Decoder
	ev, err := d.Decode([]byte(`{` + meta + `,"requestObject":` + deepJSON(400) + `,` + times +
		`,"annotations":{"vigil.dev/source":"gke","vigil.dev/truncated":"true"}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Marks{BodyUnparsed: true, Truncated: true, Source: "gke"}
	c := ev.Clone()
	if c.Vigil != want {
		t.Fatalf("clone marks %+v, want %+v", c.Vigil, want)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decode([]byte(`{` + meta + `,` + times + `}`)); err != nil {
		t.Fatal(err)
	}
	if c.Vigil.Source != "gke" {
		t.Fatal("clone's source changed after the next decode")
	}
	back, err := d.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.Vigil != want {
		t.Errorf("%s decodes to marks %+v, want %+v", b, back.Vigil, want)
	}
	// A claim in "vigil" adds to the annotations, never removes a mark.
	back, err = d.Decode([]byte(`{` + meta + `,` + times + `,"annotations":{"audit.k8s.io/truncated":"true"},"vigil":{"truncated":false,"bodyUnparsed":true}}`))
	if err != nil || back.Vigil != (Marks{BodyUnparsed: true, Truncated: true}) {
		t.Errorf("marks %+v, %v", back.Vigil, err)
	}
}

func TestTruncate(t *testing.T) {
	full := `{` + meta + `,"requestObject":{"data":"` + strings.Repeat("x", 5000) + `"},"responseObject":` + deepJSON(400) + `,` + times +
		`,"annotations":{"authorization.k8s.io/decision":"allow"}}`
	d := Decoder{Annotations: true}
	out, err := Truncate([]byte(full), 4096)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := d.Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	if !ev.Vigil.Truncated || ev.Vigil.BodyUnparsed || ev.HasRequestObject() || ev.HasResponseObject() || ev.User.Username != "mallory" ||
		ev.Annotations["authorization.k8s.io/decision"] != "allow" || ev.Annotations[AnnotationTruncated] != "true" {
		t.Fatalf("truncated to %s", out)
	}

	// Long strings are cut only when the metadata alone is too large.
	long := `{` + meta + `,` + times + `,"userAgent":"` + strings.Repeat("é", 3000) + `"}`
	out, err = Truncate([]byte(long), 4096)
	if err != nil {
		t.Fatal(err)
	}
	ev, err = d.Decode(out)
	if err != nil || len(ev.UserAgent) > truncatedStringBytes+3 || !strings.HasSuffix(ev.UserAgent, "é...") || !ev.Vigil.Truncated {
		t.Fatalf("long user agent truncated to %s (%v)", out, err)
	}
	if out, err := Truncate([]byte(long), 8000); err != nil || !strings.Contains(string(out), strings.Repeat("é", 3000)) {
		t.Errorf("strings cut although the event fits: %v", err)
	}

	for name, in := range map[string]string{
		"too large anyway": `{` + meta + `,` + times + `,"sourceIPs":[` + strings.Repeat(`"10.0.0.1",`, 1000) + `"10.0.0.2"]}`,
		"not an event":     `{"requestObject":{"a":1},"verb":"get"}`,
		"not an object":    `[1,2,3]`,
	} {
		if out, err := Truncate([]byte(in), 4096); err == nil {
			t.Errorf("%s: Truncate = %.80s, want an error", name, out)
		}
	}
}
