package webhook

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/vigil-k8s/vigil/ingest"
)

// FuzzParseBody feeds the body splitter real EventLists (testdata and
// testdata/fuzz/FuzzParseBody, from the real apiserver captures) and their
// mutations. It must never panic; the items it returns are slices of the
// body that decode as it says; on anything a tree parser reads it agrees
// with the parser; and it refuses whole only what is not JSON, never a
// document that is merely nested deep.
//
//	go test ./ingest/webhook -run '^$' -fuzz FuzzParseBody -fuzztime 60s
func FuzzParseBody(f *testing.F) {
	list, err := os.ReadFile(filepath.Join("testdata", "eventlist.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(list)
	for _, s := range []string{
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`, `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":null}`,
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[42,"x",{}]}`, `{"\u006bind":"EventList","apiVersion":"audit.k8s.io/v1","items":[1]}`,
		`{"kind":"Event","auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z"}`, `[]`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	var dec, check ingest.Decoder
	var p fastjson.Parser
	f.Fuzz(func(t *testing.T, body []byte) {
		items, code, reason, msg := parseBody(&dec, body)
		if code != 0 {
			if items != nil || reason == "" || msg == "" || strings.Contains(msg, "\n") {
				t.Fatalf("refusal %d %q %q with %d items", code, reason, msg, len(items))
			}
		}
		for i, it := range items {
			if !within(it.data, body) {
				t.Fatalf("item %d is not a slice of the body", i)
			}
			ev, err := check.Decode(it.data)
			if (err == nil) != (it.reason == "") {
				t.Fatalf("item %d: refused %q but decodes with %v", i, it.reason, err)
			}
			if err == nil && (it.key != ingest.DedupKey(ev.AuditID, ev.Stage) || it.salvaged != ev.Vigil.BodyUnparsed) {
				t.Fatalf("item %d: key %q salvaged %v, decodes to %s/%s %v", i, it.key, it.salvaged, ev.AuditID, ev.Stage, ev.Vigil.BodyUnparsed)
			}
		}
		v, perr := p.ParseBytes(body)
		if perr != nil {
			if !strings.Contains(perr.Error(), "too big depth") && (code != http.StatusBadRequest || reason != ReasonMalformed) {
				t.Fatalf("fastjson refuses the body (%v) but the splitter answers %d %s", perr, code, reason)
			}
			return
		}
		if code == 0 && string(v.GetStringBytes("kind")) == "EventList" {
			arr := v.GetArray("items")
			if len(arr) != len(items) {
				t.Fatalf("%d items, fastjson %d", len(items), len(arr))
			}
			for i, it := range items {
				var q fastjson.Parser
				iv, err := q.ParseBytes(it.data)
				if err != nil || string(iv.MarshalTo(nil)) != string(arr[i].MarshalTo(nil)) {
					t.Fatalf("item %d is %q, fastjson reads %s (%v)", i, it.data, arr[i], err)
				}
			}
		}
	})
}

// within reports whether part lies inside whole's memory.
func within(part, whole []byte) bool {
	if len(part) == 0 {
		return true
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(whole)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(part)))
	return p >= start && p+uintptr(len(part)) <= start+uintptr(len(whole))
}
