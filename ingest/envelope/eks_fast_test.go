package envelope

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// decodeBothWays decodes a record with the one-pass reader and with the
// parser, and returns what each passed on, and whether the one-pass
// reader took the record. With compact, events are compared with the
// whitespace between their tokens dropped.
func decodeBothWays(t testing.TB, data []byte, onePass func(*Decoder, []byte, string) (bool, error), compact bool) (fast, slow []string, took bool) {
	t.Helper()
	run := func(one bool) ([]string, bool) {
		var log []string
		var p fastjson.Parser
		d := &Decoder{
			Item: func(it Item) error {
				if v, err := p.ParseBytes(it.Data); compact && err == nil {
					it.Data = v.MarshalTo(nil)
				}
				log = append(log, fmt.Sprintf("item %q %+v", it.Data, it))
				return nil
			},
			Bad: func(origin string, err error, data []byte) error {
				log = append(log, fmt.Sprintf("bad %s: %v: %q", origin, err, data))
				return nil
			},
			Skip: func(origin, reason string) { log = append(log, "skip "+origin+": "+reason) },
		}
		if one {
			took, err := onePass(d, data, "r")
			if err != nil {
				log = append(log, "error "+err.Error())
			}
			return log, took
		}
		v, err := d.parsers[0].ParseBytes(data)
		if err != nil {
			return []string{"unparsable"}, false
		}
		if err := d.object(v, "r", nil, 0, data); err != nil {
			log = append(log, "error "+err.Error())
		}
		return log, true
	}
	fast, took = run(true)
	slow, _ = run(false)
	return fast, slow, took
}

func cloudWatchRecord(t testing.TB, stream string, events ...string) []byte {
	t.Helper()
	type le struct {
		ID        string `json:"id"`
		Timestamp int64  `json:"timestamp"`
		Message   string `json:"message"`
	}
	rec := struct {
		MessageType string   `json:"messageType"`
		Owner       string   `json:"owner"`
		LogGroup    string   `json:"logGroup"`
		LogStream   string   `json:"logStream"`
		Filters     []string `json:"subscriptionFilters"`
		LogEvents   []le     `json:"logEvents"`
	}{"DATA_MESSAGE", "123456789012", "/aws/eks/prod-1/cluster", stream, []string{"vigil"}, []le{}}
	for i, e := range events {
		rec.LogEvents = append(rec.LogEvents, le{fmt.Sprint(37000 + i), 1763791200000 + int64(i), e})
	}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestFastCloudWatch_SameAsParser: on the real captures and on records
// laid out otherwise, the one-pass reader passes on what the parser path
// does, or leaves the record to it.
func TestFastCloudWatch_SameAsParser(t *testing.T) {
	var real []string
	for _, e := range recording(t, "run5") {
		real = append(real, string(e))
	}
	event := real[0]
	tests := []struct {
		name string
		data []byte
		took bool
	}{
		{"real events", cloudWatchRecord(t, "kube-apiserver-audit-1", real...), true},
		{"other stream", cloudWatchRecord(t, "authenticator-1", event), true},
		{"no events", cloudWatchRecord(t, "kube-apiserver-audit-1"), true},
		{"not an audit event", cloudWatchRecord(t, "kube-apiserver-audit-1", "starting", `{"kind":"Event"}`), true},
		{"cut by CloudWatch", cloudWatchRecord(t, "kube-apiserver-audit-1", event[:300]+EKSTruncatedMarker), true},
		{"unicode", cloudWatchRecord(t, "kube-apiserver-audit-1", strings.Replace(event, `"auditID"`, `"user":{"username":"é😀<&>"},"auditID"`, 1)), true},
		{"spaced", []byte(`{"messageType":"DATA_MESSAGE" , "logGroup" : "/aws/eks/c/cluster", "logEvents" : [ { "message" : ` + mustJSON(t, event) + ` , "id" : "1" } ] }`), true},
		{"escaped id", []byte(`{"messageType":"DATA_MESSAGE","logEvents":[{"id":"\u0031","timestamp":1,"message":` + mustJSON(t, event) + `}]}`), false},
		{"float timestamp", []byte(`{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","timestamp":1.5e3,"message":` + mustJSON(t, event) + `}]}`), false},
		{"repeated member", []byte(`{"messageType":"DATA_MESSAGE","logGroup":"a","logGroup":"b","logEvents":[]}`), false},
		{"escaped name", []byte(`{"messageType":"DATA_MESSAGE","log\u0047roup":"/aws/eks/x/cluster","logEvents":[]}`), false},
		{"event not an object", []byte(`{"messageType":"DATA_MESSAGE","logEvents":["x"]}`), false},
		{"null events", []byte(`{"messageType":"DATA_MESSAGE","logEvents":null}`), false},
		{"control message", []byte(`{"messageType":"CONTROL_MESSAGE","logEvents":[]}`), false},
		{"trailing bytes", append(cloudWatchRecord(t, "kube-apiserver-audit-1", event), " x"...), false},
		{"another envelope", []byte(`{"records":[]}`), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fast, slow, took := decodeBothWays(t, tc.data, (*Decoder).fastCloudWatch, false)
			if took != tc.took {
				t.Fatalf("one-pass reader took the record: %v, want %v", took, tc.took)
			}
			if took && strings.Join(fast, "\n") != strings.Join(slow, "\n") {
				t.Errorf("one pass:\n%s\nparser:\n%s", strings.Join(fast, "\n"), strings.Join(slow, "\n"))
			}
		})
	}
}

func mustJSON(t testing.TB, s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func FuzzFastCloudWatch(f *testing.F) {
	f.Add(cloudWatchRecord(f, "kube-apiserver-audit-1", `{"kind":"Event","auditID":"a","stage":"ResponseComplete","annotations":{}}`))
	f.Add([]byte(`{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","timestamp":2,"message":"{\"auditID\":\"\\u0061\"}"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, slow, took := decodeBothWays(t, data, (*Decoder).fastCloudWatch, false)
		if took && strings.Join(fast, "\n") != strings.Join(slow, "\n") {
			t.Errorf("%q\none pass:\n%s\nparser:\n%s", data, strings.Join(fast, "\n"), strings.Join(slow, "\n"))
		}
	})
}

func aksRecordJSON(t testing.TB, category, log string) []byte {
	t.Helper()
	rec := map[string]any{"category": category, "time": "2026-11-22T06:00:01.5Z", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
		"resourceId": "/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1",
		"properties": map[string]string{"log": log, "stream": "stdout", "pod": "kube-apiserver-1"}}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestFastAKS_SameAsParser is TestFastCloudWatch_SameAsParser for AKS
// records.
func TestFastAKS_SameAsParser(t *testing.T) {
	event := string(recording(t, "run5")[3])
	tests := []struct {
		name string
		data []byte
		took bool
	}{
		{"event", aksRecordJSON(t, "kube-audit", event), true},
		{"admin category", aksRecordJSON(t, "kube-audit-admin", event), true},
		{"other category", aksRecordJSON(t, "guard", "starting"), true},
		{"not an audit event", aksRecordJSON(t, "kube-audit", `{"kind":"Event"}`), true},
		{"object too big", aksRecordJSON(t, "kube-audit", strings.Replace(event, `"responseStatus"`, `"requestObject":"skipped-too-big-size-object","responseStatus"`, 1)), true},
		{"unknown members", []byte(`{"category":"kube-audit","Cloud":"AzureCloud","properties":{"log":` + mustJSON(t, event) + `,"pod":"p"},"attrs":"{}"}`), true},
		{"no log", []byte(`{"category":"kube-audit","properties":{"pod":"p"}}`), false},
		{"no category", []byte(`{"time":"x","properties":{"log":"{}"}}`), false},
		{"log not a string", []byte(`{"category":"kube-audit","properties":{"log":{}}}`), false},
		{"escaped time", []byte(`{"category":"kube-audit","time":"2026\u002d11","properties":{"log":"{}"}}`), false},
		{"records first", []byte(`{"category":"kube-audit","records":[],"properties":{"log":"{}"}}`), false},
		{"another envelope", []byte(`{"insertId":"1","protoPayload":{}}`), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fast, slow, took := decodeBothWays(t, tc.data, (*Decoder).fastAKS, false)
			if took != tc.took {
				t.Fatalf("one-pass reader took the record: %v, want %v", took, tc.took)
			}
			if took && strings.Join(fast, "\n") != strings.Join(slow, "\n") {
				t.Errorf("one pass:\n%s\nparser:\n%s", strings.Join(fast, "\n"), strings.Join(slow, "\n"))
			}
		})
	}
}

func FuzzFastAKS(f *testing.F) {
	f.Add(aksRecordJSON(f, "kube-audit", `{"kind":"Event","auditID":"a","stage":"ResponseComplete","annotations":{}}`))
	f.Add([]byte(`{"category":"kube-audit","properties":{"log":"{\"auditID\":\"\\u0061\"}"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, slow, took := decodeBothWays(t, data, (*Decoder).fastAKS, false)
		if took && strings.Join(fast, "\n") != strings.Join(slow, "\n") {
			t.Errorf("%q\none pass:\n%s\nparser:\n%s", data, strings.Join(fast, "\n"), strings.Join(slow, "\n"))
		}
	})
}

func TestAKSCluster(t *testing.T) {
	for id, want := range map[string]string{
		"/subscriptions/x/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/Prod-1": "Prod-1",
		"/SUBSCRIPTIONS/X/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1/extra":               "AKS1",
		"\xff/MANAGEDCLUSTERS/":       "",
		"/İstanbul/managedClusters/c": "c",
		"/subscriptions/x":            "",
	} {
		if got := AKSCluster(id); got != want {
			t.Errorf("AKSCluster(%q) = %q, want %q", id, got, want)
		}
	}
}
