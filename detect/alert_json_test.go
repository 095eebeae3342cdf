package detect

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// sameJSON checks that AppendJSON writes what encoding/json writes.
func sameJSON(t *testing.T, a *Alert) {
	t.Helper()
	want, werr := json.Marshal(plainAlert(*a))
	got, gerr := a.AppendJSON(nil)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("AppendJSON error %v, encoding/json error %v", gerr, werr)
	}
	if werr == nil && !bytes.Equal(got, want) {
		t.Fatalf("AppendJSON:\n%s\nencoding/json:\n%s", got, want)
	}
	// Through encoding/json, which calls MarshalJSON.
	if werr == nil {
		via, err := json.Marshal(a)
		if err != nil || !bytes.Equal(via, want) {
			t.Fatalf("json.Marshal of the alert: %s, %v", via, err)
		}
	}
}

func TestAlert_AppendJSONMatchesEncodingJSON(t *testing.T) {
	since := t0.Add(-time.Minute)
	odd := "a<b>&c \"q\" \\ \b\f\n\r\t\x01\x1f\x7f é \u2028\u2029 \xff\xfe end"
	zone := time.FixedZone("x", 5*3600+30*60)
	cases := []Alert{
		{},
		{Rule: odd, Title: odd, Severity: SeverityCritical, Tags: []string{odd, ""}, Description: odd, Message: odd,
			Time: t0.In(zone), Cluster: odd, User: ingest.UserInfo{Username: odd, UID: odd, Groups: []string{odd},
				Extra: map[string][]string{"b": {odd}, "a": nil, odd: {}}},
			ImpersonatedUser: &ingest.UserInfo{}, SourceIPs: []string{}, UserAgent: odd, Verb: odd,
			ObjectRef: &ingest.ObjectRef{Name: odd, Subresource: "x"}, RequestURI: odd, ResponseCode: -1, ExecCommand: odd,
			AuditIDs: []string{}, GroupKey: odd, Count: 1 << 40, Distinct: []string{odd}, FirstTime: t0.Add(time.Nanosecond),
			LastTime: t0.Add(1500 * time.Millisecond), Fingerprint: odd, Suppressed: 3, SuppressedSince: &since},
		{Rule: "r", ObjectRef: &ingest.ObjectRef{}, Severity: Severity(42), Tags: []string{}},
		{Rule: "old", Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Rule: "far", FirstTime: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Rule: "zone", LastTime: t0.In(time.FixedZone("s", 3600+7))},
		{Rule: "since", SuppressedSince: &time.Time{}},
	}
	for i := range cases {
		sameJSON(t, &cases[i])
	}
	rs := builtinRuleSet(t)
	n := 0
	for name, events := range equivalenceCorpora(t, rs, 5000) {
		alerts, err := Evaluate(rs, events)
		if err != nil && name != "fixtures" {
			t.Fatalf("%s: %v", name, err)
		}
		for i := range alerts {
			sameJSON(t, &alerts[i])
		}
		n += len(alerts)
	}
	if n == 0 {
		t.Fatal("the corpora raised no alert")
	}
}
