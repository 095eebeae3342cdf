package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/auditgen"
)

// treeDecode decodes through the parse tree alone, as Decode did before it
// scanned.
func treeDecode(d *Decoder, data []byte) (*Event, error) {
	v, err := d.p.ParseBytes(data)
	if err != nil {
		return d.salvage(data, err)
	}
	return d.decodeValue(v)
}

// sameDecoding checks that Decode and the tree decoder agree on data,
// bodies included, and reports whether the scan decided.
func sameDecoding(t testing.TB, data []byte, ann, extra bool) bool {
	t.Helper()
	scan, tree := &Decoder{Annotations: ann, Extra: extra}, &Decoder{Annotations: ann, Extra: extra}
	_, _, decided := scan.scanEvent(data)
	got, gerr := scan.Decode(data)
	want, werr := treeDecode(tree, data)
	if (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
		t.Fatalf("%.300q:\nscan error %v\ntree error %v", data, gerr, werr)
	}
	if gerr != nil {
		return decided
	}
	if got.HasRequestObject() != want.HasRequestObject() || got.HasResponseObject() != want.HasResponseObject() {
		t.Fatalf("%.300q: bodies differ: scan %v %v, tree %v %v", data,
			got.HasRequestObject(), got.HasResponseObject(), want.HasRequestObject(), want.HasResponseObject())
	}
	got.LoadObjects()
	want.LoadObjects()
	g, w := *got, *want
	g.lazy, w.lazy = nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%.300q:\nscan %+v\ntree %+v", data, g, w)
	}
	return decided
}

func captureEvents(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, run := range []string{"run2", "run5"} {
		f, err := os.Open(filepath.Join("..", "testdata", "real-apiserver", run, "audit.log.gz"))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			out = append(out, bytes.Clone(sc.Bytes()))
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// scanEdgeCases are inputs the scan must read as the tree decoder does, or
// leave to it.
var scanEdgeCases = []string{
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","user":{"username":"a\"b\\c\/d\u00e9\ud83d\ude00\u12","groups":["g\n",1,null,{"x":[]}]}}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","userAgent":"\ud800x","requestURI":"\q\u00zz"}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":""}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":null,"stageTimestamp":"2026-11-22T06:25:37Z"}`,
	`{"auditID":"a","stage":"s","verb":"v","stageTimestamp":"2026-11-22T06:25:37Z","requestReceivedTimestamp":5}`,
	`{"auditID":"a","stage":"s","verb":"v","stageTimestamp":7,"requestReceivedTimestamp":"2026-11-22T06:25:37Z"}`,
	` {"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z"} ` + "\n",
	`{ "auditID" : "a" , "stage":"s" ,"verb" :"v", "requestReceivedTimestamp":"2026-11-22T06:25:37Z" , "responseStatus" : { "code" : 403 , "x": [ ] } }`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","responseStatus":{"code":2e2}}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","responseStatus":{"code":-1.5}}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","responseStatus":{"code":99999999999999999999}}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","responseStatus":{"code":NaN}}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","responseStatus":{"code":"403"}}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","responseStatus":{"code":403,"code":true}}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","requestObject":null,"responseObject":-1.5e3}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","requestObject":{"metadata":{"managedFields":[1],"name":"x"}},"responseObject":[1,"2",{"3":null}]}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","requestObject":"just a string","responseObject":false}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","annotations":{"vigil.dev/source":"a","vigil.dev/truncated":"true","k":1},"vigil":{"source":"b","truncated":false,"bodyUnparsed":true}}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","vigil":{"source":"b"},"annotations":{"vigil.dev/source":"a"},"annotations":{"x":"y"}}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","annotations":"no","vigil":[1],"objectRef":7,"user":"u"}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","user":{"username":"u","extra":{"a":["1","2"],"b":"x","c":[]}},"user":{"groups":["h"]}}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","sourceIPs":"1.2.3.4","impersonatedUser":{"username":"i","groups":["x"]}}`,
	`{"kind":"EventList","auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z"}`,
	`{"apiVersion":"v2","auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z"}`,
	`{"auditID":"a","stage":"s","requestReceivedTimestamp":"2026-11-22T06:25:37Z"}`,
	`{"auditID":"a","stage":"s","verb":"v","requ\u0065stObject":{"x":1},"requestReceivedTimestamp":"2026-11-22T06:25:37Z"}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z"} x`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z",}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","requestObject":` + deepJSON(140) + `}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","requestObject":` + deepJSON(151) + `}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","user":{"extra":{"k":` + strings.Repeat("[", 298) + strings.Repeat("]", 298) + `}}}`,
	`{"auditID":"a\\","stage":"s\\\"","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z"}`,
	`{"auditID":"a","stage":"s","verb":"v","requestReceivedTimestamp":"2026-11-22T06:25:37Z","objectRef":{"resource":"pods","name":"p","resource":"x","uid":null}}`,
	`[{"auditID":"a"}]`, `{}`, `{"a":}`, `{"auditID":"a`, `{"auditID":"a"`, "{\"auditID\":\"a\"\x00}",
}

func TestDecode_ScanAgreesWithTree(t *testing.T) {
	type corpus struct {
		name   string
		events [][]byte
		// whole: the scan must decide every event itself.
		whole bool
	}
	corpora := []corpus{
		{"real events", realEvents(t), true},
		{"real captures", captureEvents(t), true},
		{"generated mix", auditgen.Events(auditgen.Options{Seed: 3}, 3000), true},
		{"generated benign day", auditgen.Events(auditgen.Options{Seed: 3, Profile: auditgen.ProfileBenignDay}, 2000), true},
	}
	var edge [][]byte
	for _, s := range scanEdgeCases {
		edge = append(edge, []byte(s))
	}
	corpora = append(corpora, corpus{name: "edge cases", events: edge})
	for _, c := range corpora {
		t.Run(c.name, func(t *testing.T) {
			for _, ann := range []bool{false, true} {
				for i, e := range c.events {
					if !sameDecoding(t, e, ann, ann) && c.whole {
						t.Errorf("event %d: the scan left it to the tree decoder: %.200s", i, e)
					}
				}
			}
		})
	}
}

// FuzzDecodeScan holds the scan to the tree decoder on mutated events.
//
//	go test ./ingest -run '^$' -fuzz FuzzDecodeScan -fuzztime 60s
func FuzzDecodeScan(f *testing.F) {
	for _, e := range realEvents(f) {
		f.Add(e)
	}
	for _, e := range auditgen.Events(auditgen.Options{Seed: 5}, 30) {
		f.Add(e)
	}
	for _, s := range scanEdgeCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameDecoding(t, data, true, true)
		sameDecoding(t, data, false, false)
	})
}
