package logfile_test

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/logfile"
)

// deepEvent is an event whose request body nests 800 levels deep, as a
// custom resource with preserve-unknown-fields can.
func deepEvent(id string) []byte {
	return []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"` + id + `","stage":"ResponseComplete",` +
		`"verb":"create","user":{"username":"mallory"},"objectRef":{"resource":"widgets","apiGroup":"example.com","name":"w1"},` +
		`"responseStatus":{"code":201},"requestObject":` + strings.Repeat(`{"spec":[`, 400) + `1` + strings.Repeat(`]}`, 400) +
		`,"requestReceivedTimestamp":"2026-11-22T06:00:00.000001Z","stageTimestamp":"2026-11-22T06:00:00.000100Z"}`)
}

// TestReader_Salvage checks that a document with an item too deep or a
// break yields the items it can, and that records whose JSON is not whole
// are reported to OnSalvage when their metadata can be read, and passed on
// either way.
func TestReader_Salvage(t *testing.T) {
	ev := realEvents(t)
	deep := deepEvent("deep-1")
	list := func(sep string, items ...[]byte) []byte {
		return slices.Concat([]byte(`{`+sep+`"kind":"EventList","apiVersion":"audit.k8s.io/v1",`+sep+`"items":[`+sep), bytes.Join(items, []byte(","+sep)), []byte(sep+"]}"+sep))
	}
	cutAfterTimes := ev[0][:bytes.Index(ev[0], []byte(`"annotations"`))+20]
	cutInBody := deep[:len(deep)/2]
	pretty := list("\n", ev[0], ev[1], ev[2])
	tests := []struct {
		name      string
		data      []byte
		want      []string // origins of the records
		wantData  [][]byte
		salvaged  []string
		wantError string // a reported problem
	}{
		{
			name:     "event list with a deep item",
			data:     list("\n", ev[0], deep, ev[1]),
			want:     []string{"f: item 1", "f: item 2", "f: item 3"},
			wantData: [][]byte{ev[0], deep, ev[1]},
			salvaged: []string{"f: item 2"},
		},
		{
			name:     "event list on one line with a deep item",
			data:     list("", deep, ev[1]),
			want:     []string{"f:1: item 1", "f:1: item 2"},
			wantData: [][]byte{deep, ev[1]},
			salvaged: []string{"f:1: item 1"},
		},
		{
			name:      "event list cut off",
			data:      pretty[:bytes.Index(pretty, ev[2])+100],
			want:      []string{"f: item 1", "f: item 2"},
			wantData:  [][]byte{ev[0], ev[1]},
			wantError: "f: malformed JSON: offset",
		},
		{
			name:      "array cut off",
			data:      slices.Concat([]byte("[\n"), ev[3], []byte(",\n"), ev[4][:50]),
			want:      []string{"f: item 1"},
			wantData:  [][]byte{ev[3]},
			wantError: "f: malformed JSON: offset",
		},
		{
			name:     "single event cut off",
			data:     slices.Concat([]byte("{\n"), ev[0][1:len(cutAfterTimes)]),
			want:     []string{"f: item 1"},
			salvaged: []string{"f: item 1"},
		},
		{
			name:     "lines",
			data:     lines(ev[0], deep, cutInBody, cutAfterTimes, []byte("not json"), ev[1]),
			want:     []string{"f:1", "f:2", "f:3", "f:4", "f:5", "f:6"},
			wantData: [][]byte{ev[0], deep, cutInBody, cutAfterTimes, []byte("not json"), ev[1]},
			salvaged: []string{"f:2", "f:4"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := write(t, filepath.Join(dir, "f"), tt.data)
			var salvaged, problems []string
			r, err := logfile.Open([]string{path}, nil, logfile.Options{
				OnError: func(origin string, err error) error {
					problems = append(problems, origin+": "+err.Error())
					return nil
				},
				OnSalvage: func(origin string, err error) {
					salvaged = append(salvaged, origin)
					if err == nil || (!strings.Contains(err.Error(), "malformed JSON") && !strings.Contains(err.Error(), "levels deep")) {
						t.Errorf("%s: salvage reason %v", origin, err)
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close(context.Background())
			recs, _ := readAll(t, r, logfile.DefaultBatchSize)
			trim := func(s []string) []string {
				out := make([]string, len(s))
				for i, o := range s {
					out[i] = strings.TrimPrefix(o, dir+string(filepath.Separator))
				}
				return out
			}
			if got := trim(origins(recs)); !slices.Equal(got, tt.want) {
				t.Errorf("records %q, want %q", got, tt.want)
			}
			for i, w := range tt.wantData {
				if i < len(recs) && !bytes.Equal(recs[i].Data, w) {
					t.Errorf("record %d = %.60q, want %.60q", i, recs[i].Data, w)
				}
			}
			if got := trim(salvaged); !slices.Equal(got, tt.salvaged) {
				t.Errorf("salvaged %q, want %q", got, tt.salvaged)
			}
			problems = trim(problems)
			if tt.wantError == "" && len(problems) > 0 || tt.wantError != "" && (len(problems) != 1 || !strings.HasPrefix(problems[0], tt.wantError)) {
				t.Errorf("problems %q, want %q", problems, tt.wantError)
			}
			var d ingest.Decoder
			for _, rec := range recs {
				if ev, err := d.Decode(rec.Data); err == nil && ev.Vigil.BodyUnparsed != slices.Contains(tt.salvaged, trim([]string{rec.Origin})[0]) {
					t.Errorf("%s: decoded with bodyUnparsed %v", rec.Origin, ev.Vigil.BodyUnparsed)
				}
			}
		})
	}
}
