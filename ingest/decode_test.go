package ingest

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// realEvents returns the events captured from a real kube-apiserver
// (testdata/real-events.jsonl), one per line.
func realEvents(t testing.TB) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "real-events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	if len(out) == 0 {
		t.Fatal("testdata/real-events.jsonl holds no events")
	}
	return out
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDecoder_Decode_RealEvents(t *testing.T) {
	events := realEvents(t)
	// What each captured line must decode to (in file order).
	want := []struct {
		auditID, stage, verb, user, resource, sub, ns, name, agent string
		code                                                       int
		received                                                   string
		groups, ips                                                int
		hasReq, hasResp                                            bool
	}{
		{"9254dcd1-6f4e-4b7c-9672-3a8cad81578f", "ResponseComplete", "get", "alice", "configmaps", "", "team-a", "app-config",
			"kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0", 200, "2026-11-22T06:26:15.648650Z", 2, 1, false, false},
		{"7a2eba4f-f673-4d59-8852-ab25f6d91596", "ResponseStarted", "get", "kubernetes-admin", "pods", "exec", "team-a", "web",
			"kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0", 101, "2026-11-22T06:27:44.018378Z", 2, 1, false, false},
		{"39762060-a08b-4090-8345-da242cea5458", "ResponseStarted", "list", "", "secrets", "", "", "",
			"curl/7.88.1", 401, "", 0, 1, false, false},
		{"ce381232-2817-408d-8413-3ccb7eb18fdf", "ResponseComplete", "get", "system:kube-controller-manager", "", "", "", "",
			"", 200, "", 1, 1, false, false},
		{"8576aae2-99b1-4a98-9956-ce824b04f49a", "ResponseComplete", "list", "kubernetes-admin", "secrets", "", "prod", "",
			"", 403, "", 2, 1, false, false},
		{"2071b616-c3ef-4da1-8ff6-43b5f8db2e08", "ResponseComplete", "create", "kubernetes-admin", "clusterrolebindings", "", "", "mallory-cluster-admin",
			"", 201, "", 2, 1, true, true},
	}
	if len(events) != len(want) {
		t.Fatalf("testdata holds %d events, the table %d", len(events), len(want))
	}
	var d Decoder
	for i, w := range want {
		ev, err := d.Decode(events[i])
		if err != nil {
			t.Fatalf("event %d: %v", i+1, err)
		}
		checks := []struct {
			field     string
			got, want any
		}{
			{"auditID", ev.AuditID, w.auditID},
			{"stage", ev.Stage, w.stage},
			{"verb", ev.Verb, w.verb},
			{"user.username", ev.User.Username, w.user},
			{"objectRef.resource", ev.ObjectRef.Resource, w.resource},
			{"objectRef.subresource", ev.ObjectRef.Subresource, w.sub},
			{"objectRef.namespace", ev.ObjectRef.Namespace, w.ns},
			{"objectRef.name", ev.ObjectRef.Name, w.name},
			{"responseStatus.code", ev.ResponseStatus.Code, w.code},
			{"len(user.groups)", len(ev.User.Groups), w.groups},
			{"len(sourceIPs)", len(ev.SourceIPs), w.ips},
			{"HasRequestObject", ev.HasRequestObject(), w.hasReq},
			{"HasResponseObject", ev.HasResponseObject(), w.hasResp},
		}
		if w.agent != "" {
			checks = append(checks, struct {
				field     string
				got, want any
			}{"userAgent", ev.UserAgent, w.agent})
		}
		if w.received != "" {
			checks = append(checks, struct {
				field     string
				got, want any
			}{"requestReceivedTimestamp", ev.RequestReceivedTimestamp, mustTime(w.received)})
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("event %d: %s = %v, want %v", i+1, c.field, c.got, c.want)
			}
		}
		if ev.Time().IsZero() || ev.StageTimestamp.Before(ev.RequestReceivedTimestamp) {
			t.Errorf("event %d: times received %v, stage %v", i+1, ev.RequestReceivedTimestamp, ev.StageTimestamp)
		}
		if ev.Annotations != nil {
			t.Errorf("event %d: annotations decoded without Decoder.Annotations", i+1)
		}
	}
}

func TestDecoder_Decode_Objects(t *testing.T) {
	events := realEvents(t)
	var d Decoder
	ev, err := d.Decode(events[5]) // the cluster-admin binding, RequestResponse
	if err != nil {
		t.Fatal(err)
	}
	if ev.RequestObject != nil || ev.ResponseObject != nil {
		t.Fatal("objects decoded before LoadObjects")
	}
	ev.LoadObjects()
	req, ok := ev.RequestObject.(map[string]any)
	if !ok {
		t.Fatalf("requestObject is %T, want map[string]any", ev.RequestObject)
	}
	roleRef, _ := req["roleRef"].(map[string]any)
	if roleRef["name"] != "cluster-admin" {
		t.Errorf("requestObject.roleRef.name = %v, want cluster-admin", roleRef["name"])
	}
	subjects, _ := req["subjects"].([]any)
	if len(subjects) != 1 {
		t.Errorf("requestObject.subjects = %v, want one subject", req["subjects"])
	}
	if _, ok := ev.ResponseObject.(map[string]any); !ok {
		t.Errorf("responseObject is %T, want map[string]any", ev.ResponseObject)
	}

	// requestObject: null is no object.
	ev, err = d.Decode([]byte(`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestReceivedTimestamp":"2026-11-22T06:00:00Z","requestObject":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev.HasRequestObject() {
		t.Error("null requestObject reported as present")
	}
}

func TestDecoder_Decode_Annotations(t *testing.T) {
	events := realEvents(t)
	d := Decoder{Annotations: true}
	ev, err := d.Decode(events[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.Annotations["authorization.k8s.io/decision"]; got != "allow" {
		t.Errorf(`annotations["authorization.k8s.io/decision"] = %q, want allow`, got)
	}
	// An event without annotations must not see the previous event's.
	ev, err = d.Decode(events[2])
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Annotations) != 0 {
		t.Errorf("annotations of an event without any = %v, want none", ev.Annotations)
	}
}

// TestEvent_Clone checks that a clone survives the decoder's next events
// and carries the objects only when they were loaded.
func TestEvent_Clone(t *testing.T) {
	events := realEvents(t)
	d := Decoder{Annotations: true}
	ev, err := d.Decode(events[5])
	if err != nil {
		t.Fatal(err)
	}
	bare := ev.Clone()
	if bare.RequestObject != nil || bare.HasRequestObject() {
		t.Error("clone of an event whose objects were not loaded carries them")
	}
	ev.LoadObjects()
	kept := ev.Clone()
	want := *kept
	for _, e := range events {
		if _, err := d.Decode(e); err != nil {
			t.Fatal(err)
		}
	}
	if kept.AuditID != "2071b616-c3ef-4da1-8ff6-43b5f8db2e08" || kept.User.Username != "kubernetes-admin" ||
		kept.ObjectRef.Name != "mallory-cluster-admin" || kept.Annotations["authorization.k8s.io/decision"] != "allow" {
		t.Errorf("clone changed after later decodes: %+v", kept)
	}
	if kept.AuditID != want.AuditID || kept.Stage != want.Stage || len(kept.User.Groups) != len(want.User.Groups) {
		t.Errorf("clone = %+v, want %+v", kept, want)
	}
	if kept.RequestObject == nil || kept.ResponseObject == nil {
		t.Error("clone lost the request and response objects")
	}
}

func TestDecoder_Decode_Shapes(t *testing.T) {
	const ts = `"requestReceivedTimestamp":"2026-11-22T06:25:37.638648Z"`
	tests := []struct {
		name    string
		in      string
		wantErr string // "" means the event decodes
	}{
		{"minimal", `{"auditID":"a","stage":"ResponseComplete","verb":"get",` + ts + `}`, ""},
		{"v1", `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","verb":"get",` + ts + `}`, ""},
		{"v1beta1", `{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","auditID":"a","stage":"ResponseComplete","verb":"get",` + ts + `}`, ""},
		{"requestURI without verb", `{"auditID":"a","stage":"ResponseComplete","requestURI":"/healthz",` + ts + `}`, ""},
		{"stage timestamp only", `{"auditID":"a","stage":"ResponseComplete","verb":"get","stageTimestamp":"2026-11-22T06:25:37Z"}`, ""},
		{"offset time", `{"auditID":"a","stage":"ResponseComplete","verb":"get","requestReceivedTimestamp":"2026-11-22T07:25:37.5+01:00"}`, ""},
		{"unknown fields", `{"auditID":"a","stage":"ResponseComplete","verb":"get",` + ts + `,"future":{"x":[1,2]}}`, ""},
		{"wrong kind", `{"kind":"Pod","auditID":"a","stage":"ResponseComplete","verb":"get",` + ts + `}`, `kind "Pod", want Event`},
		{"event list", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`, `kind "EventList"`},
		{"wrong apiVersion", `{"apiVersion":"v1","auditID":"a","stage":"ResponseComplete","verb":"get",` + ts + `}`, `apiVersion "v1"`},
		{"missing auditID", `{"stage":"ResponseComplete","verb":"get",` + ts + `}`, "missing auditID"},
		{"numeric auditID", `{"auditID":7,"stage":"ResponseComplete","verb":"get",` + ts + `}`, "missing auditID"},
		{"missing stage", `{"auditID":"a","verb":"get",` + ts + `}`, "missing stage"},
		{"missing verb and URI", `{"auditID":"a","stage":"ResponseComplete",` + ts + `}`, "missing verb and requestURI"},
		{"missing time", `{"auditID":"a","stage":"ResponseComplete","verb":"get"}`, "missing requestReceivedTimestamp"},
		{"numeric time", `{"auditID":"a","stage":"ResponseComplete","verb":"get","requestReceivedTimestamp":1700000000}`, "requestReceivedTimestamp is not a string"},
		{"bad time", `{"auditID":"a","stage":"ResponseComplete","verb":"get","requestReceivedTimestamp":"yesterday"}`, `want RFC 3339 time, got "yesterday"`},
		{"bad stage time", `{"auditID":"a","stage":"ResponseComplete","verb":"get",` + ts + `,"stageTimestamp":"2026-13-01T00:00:00Z"}`, "stageTimestamp"},
		{"array", `[{"auditID":"a"}]`, "want a JSON object, got array"},
		{"string", `"hello"`, "want a JSON object, got string"},
		{"null", `null`, "want a JSON object, got null"},
		{"truncated", `{"auditID":"a","stage":"Resp`, "malformed JSON"},
		{"not JSON", `I1122 06:25:37.638648 1 audit.go:42] not an event`, "malformed JSON"},
		{"empty", ``, "malformed JSON"},
	}
	var d Decoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := d.Decode([]byte(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if ev.AuditID != "a" || ev.Time().IsZero() {
					t.Errorf("decoded %+v", ev)
				}
				return
			}
			if err == nil {
				t.Fatalf("Decode succeeded, want error containing %q", tt.wantErr)
			}
			if !errors.Is(err, ErrNotEvent) {
				t.Errorf("error %v does not wrap ErrNotEvent", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestDecoder_Decode_Reuse checks that fields of one event do not leak into
// the next (the decoder reuses its buffers).
func TestDecoder_Decode_Reuse(t *testing.T) {
	var d Decoder
	full := `{"auditID":"a","stage":"ResponseComplete","verb":"get","requestReceivedTimestamp":"2026-11-22T06:00:00Z",` +
		`"user":{"username":"u","groups":["g1","g2"],"extra":{"k":["v"]}},"impersonatedUser":{"username":"i","groups":["ig"]},` +
		`"sourceIPs":["10.0.0.1","10.0.0.2"],"objectRef":{"resource":"pods","namespace":"n","name":"p","subresource":"exec"},` +
		`"responseStatus":{"code":403,"reason":"Forbidden"},"requestObject":{"a":1}}`
	bare := `{"auditID":"b","stage":"ResponseComplete","requestURI":"/healthz","requestReceivedTimestamp":"2026-11-22T06:00:01Z"}`
	if _, err := d.Decode([]byte(full)); err != nil {
		t.Fatal(err)
	}
	ev, err := d.Decode([]byte(bare))
	if err != nil {
		t.Fatal(err)
	}
	if ev.User.Username != "" || ev.User.Groups != nil || ev.User.Extra != nil || ev.ImpersonatedUser.Username != "" ||
		ev.ImpersonatedUser.Groups != nil || ev.SourceIPs != nil || ev.ObjectRef != (ObjectRef{}) ||
		ev.ResponseStatus != (Status{}) || ev.HasRequestObject() {
		t.Errorf("fields of the previous event leaked: %+v", ev)
	}
}

func TestParseTime(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"2026-11-22T06:25:37.638648Z", time.Date(2026, 11, 22, 6, 25, 37, 638648000, time.UTC), false},
		{"2026-11-22T06:25:37Z", time.Date(2026, 11, 22, 6, 25, 37, 0, time.UTC), false},
		{"2026-11-22T06:25:37.1Z", time.Date(2026, 11, 22, 6, 25, 37, 100000000, time.UTC), false},
		{"2026-11-22T06:25:37.123456789Z", time.Date(2026, 11, 22, 6, 25, 37, 123456789, time.UTC), false},
		{"2026-11-22T07:25:37.5+01:00", time.Date(2026, 11, 22, 6, 25, 37, 500000000, time.UTC), false},
		{"2026-11-22T06:25:37.Z", time.Time{}, true},
		{"2026-11-22 06:25:37Z", time.Time{}, true},
		{"2026-11-22T24:00:00Z", time.Time{}, true},
		{"2026-00-22T06:25:37Z", time.Time{}, true},
		{"2026-11-22T06:25:3xZ", time.Time{}, true},
		// The fast path must not accept dates the standard parser rejects.
		{"2026-02-31T06:25:37Z", time.Time{}, true},
		{"2026-11-22T06:25:60Z", time.Time{}, true},
		{"", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := ParseTime([]byte(tt.in))
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseTime(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
