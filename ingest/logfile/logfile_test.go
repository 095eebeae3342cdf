package logfile_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/logfile"
	"github.com/vigil-k8s/vigil/internal/auditgen"
)

// realEvents are events captured from a real kube-apiserver, one per line.
func realEvents(t *testing.T) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "real-events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	if len(out) < 6 {
		t.Fatalf("want at least 6 real events, got %d", len(out))
	}
	return out
}

func realEventList(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "real-eventlist.json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func lines(events ...[]byte) []byte {
	var b []byte
	for _, e := range events {
		b = append(b, e...)
		b = append(b, '\n')
	}
	return b
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func write(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// bigEvent returns a valid event of about size bytes (a large
// requestObject, as a RequestResponse ConfigMap write has).
func bigEvent(size int) []byte {
	return fmt.Appendf(nil, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"big-%d","stage":"ResponseComplete","verb":"create","requestReceivedTimestamp":"2026-11-22T06:00:00.000001Z","requestObject":{"data":{"blob":%q}}}`,
		size, strings.Repeat("x", size))
}

// readAll reads every batch and returns the records and the reported
// problems as "origin: error".
func readAll(t *testing.T, r *logfile.Reader, batchSize int) (recs []ingest.Record, batches int) {
	t.Helper()
	ctx := context.Background()
	for range 100_000 {
		b, err := r.Read(ctx)
		if len(b.Records) > batchSize {
			t.Errorf("batch of %d records, want at most %d", len(b.Records), batchSize)
		}
		if len(b.Records) > 0 {
			batches++
		}
		recs = append(recs, b.Records...)
		if errors.Is(err, io.EOF) {
			return recs, batches
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	t.Fatal("Read never returned io.EOF")
	return nil, 0
}

func origins(recs []ingest.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Origin
	}
	return out
}

func TestReader_Read(t *testing.T) {
	ev := realEvents(t)
	list := realEventList(t)
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, list, "", "  "); err != nil {
		t.Fatal(err)
	}
	huge := bigEvent(400 << 10) // longer than the read buffer
	long := bigEvent(100 << 10) // longer than the document sniffing window
	medium := bigEvent(4 << 10) // over a small MaxLineBytes

	tests := []struct {
		name string
		// files maps names (relative to a temp dir) to contents; paths
		// are the arguments, relative to the same dir ("-" is stdin).
		files map[string][]byte
		paths []string
		stdin []byte
		opts  logfile.Options
		// want are the records' origins (relative names) and, for
		// records that are whole events, their data.
		want     []string
		wantData [][]byte
		// wantErrs are the reported problems, "origin: text" with the
		// text a substring of the error.
		wantErrs []string
	}{
		{
			name:     "json lines",
			files:    map[string][]byte{"audit.log": lines(ev[0], ev[1], ev[2])},
			paths:    []string{"audit.log"},
			want:     []string{"audit.log:1", "audit.log:2", "audit.log:3"},
			wantData: [][]byte{ev[0], ev[1], ev[2]},
		},
		{
			name:     "blank lines and CRLF",
			files:    map[string][]byte{"audit.log": slices.Concat([]byte("\n"), ev[0], []byte("\r\n\r\n  \n"), ev[1], []byte("\n\n"))},
			paths:    []string{"audit.log"},
			want:     []string{"audit.log:2", "audit.log:5"},
			wantData: [][]byte{ev[0], ev[1]},
		},
		{
			name:     "no newline at the end",
			files:    map[string][]byte{"audit.log": slices.Concat(ev[0], []byte("\n"), ev[1])},
			paths:    []string{"audit.log"},
			want:     []string{"audit.log:1", "audit.log:2"},
			wantData: [][]byte{ev[0], ev[1]},
		},
		{
			name:  "empty file",
			files: map[string][]byte{"audit.log": nil},
			paths: []string{"audit.log"},
		},
		{
			name:     "gzip",
			files:    map[string][]byte{"audit.log.gz": gzipped(t, lines(ev[0], ev[1], ev[2]))},
			paths:    []string{"audit.log.gz"},
			want:     []string{"audit.log.gz:1", "audit.log.gz:2", "audit.log.gz:3"},
			wantData: [][]byte{ev[0], ev[1], ev[2]},
		},
		{
			name: "bad gzip, next file read",
			files: map[string][]byte{
				"bad.log.gz": append([]byte{0x1f, 0x8b}, []byte("this is not deflate data at all")...),
				"good.log":   lines(ev[0]),
			},
			paths:    []string{"bad.log.gz", "good.log"},
			want:     []string{"good.log:1"},
			wantData: [][]byte{ev[0]},
			wantErrs: []string{"bad.log.gz: gzip: "},
		},
		{
			name: "rotated directory in time order",
			files: map[string][]byte{
				"logs/audit.log":                           lines(ev[2]),
				"logs/audit-2026-11-22T05-56-31.320.log":   lines(ev[1]),
				"logs/audit-2026-11-22T04-10-00.000.log":   lines(ev[0]),
				"logs/audit-2026-11-22T04-10-00.000.log.1": nil,
				"logs/.audit.log.swp":                      []byte("not a log"),
				"logs/README.md":                           []byte("not a log either"),
				"logs/timeline.tsv":                        []byte("ts\tscenario"),
				"logs/sub/other.log":                       lines(ev[3]),
			},
			paths: []string{"logs"},
			opts:  logfile.Options{BatchSize: 2},
			want: []string{
				"logs/audit-2026-11-22T04-10-00.000.log:1",
				"logs/audit-2026-11-22T05-56-31.320.log:1",
				"logs/audit.log:1",
			},
			wantData: [][]byte{ev[0], ev[1], ev[2]},
		},
		{
			name: "rotated files ordered by their stamp, not their name",
			files: map[string][]byte{
				"logs/b-2026-11-22T04-00-00.000.log": lines(ev[0]),
				"logs/a-2026-11-22T05-00-00.000.log": lines(ev[1]),
			},
			paths:    []string{"logs"},
			want:     []string{"logs/b-2026-11-22T04-00-00.000.log:1", "logs/a-2026-11-22T05-00-00.000.log:1"},
			wantData: [][]byte{ev[0], ev[1]},
		},
		{
			name:     "stdin",
			paths:    []string{"-"},
			stdin:    lines(ev[0], ev[1]),
			want:     []string{"stdin:1", "stdin:2"},
			wantData: [][]byte{ev[0], ev[1]},
		},
		{
			name:     "gzip on stdin",
			paths:    []string{"-"},
			stdin:    gzipped(t, lines(ev[0])),
			want:     []string{"stdin:1"},
			wantData: [][]byte{ev[0]},
		},
		{
			name:  "event list on one line",
			files: map[string][]byte{"body.json": list},
			paths: []string{"body.json"},
			want:  []string{"body.json:1: item 1", "body.json:1: item 2", "body.json:1: item 3", "body.json:1: item 4"},
		},
		{
			name:  "event list pretty-printed",
			files: map[string][]byte{"body.json": pretty.Bytes()},
			paths: []string{"body.json"},
			want:  []string{"body.json: item 1", "body.json: item 2", "body.json: item 3", "body.json: item 4"},
		},
		{
			name:     "array of events pretty-printed",
			files:    map[string][]byte{"events.json": slices.Concat([]byte("[\n  "), ev[0], []byte(",\n  "), ev[1], []byte("\n]\n"))},
			paths:    []string{"events.json"},
			want:     []string{"events.json: item 1", "events.json: item 2"},
			wantData: [][]byte{ev[0], ev[1]},
		},
		{
			name:     "array of events on one line",
			files:    map[string][]byte{"events.json": slices.Concat([]byte("["), ev[0], []byte(","), ev[1], []byte("]\n"))},
			paths:    []string{"events.json"},
			want:     []string{"events.json:1: item 1", "events.json:1: item 2"},
			wantData: [][]byte{ev[0], ev[1]},
		},
		{
			name:     "huge line skipped, the rest read",
			files:    map[string][]byte{"audit.log": lines(ev[0], huge, ev[1])},
			paths:    []string{"audit.log"},
			opts:     logfile.Options{MaxLineBytes: 300 << 10},
			want:     []string{"audit.log:1", "audit.log:3"},
			wantData: [][]byte{ev[0], ev[1]},
			wantErrs: []string{"audit.log:2: exceeds the limit of 307200 bytes"},
		},
		{
			name:     "line over a small limit",
			files:    map[string][]byte{"audit.log": lines(ev[0], medium, ev[1])},
			paths:    []string{"audit.log"},
			opts:     logfile.Options{MaxLineBytes: 1024},
			want:     []string{"audit.log:1", "audit.log:3"},
			wantData: [][]byte{ev[0], ev[1]},
			wantErrs: []string{"audit.log:2: exceeds the limit of 1024 bytes"},
		},
		{
			name:     "first line longer than the sniffing window",
			files:    map[string][]byte{"audit.log": lines(long, ev[0])},
			paths:    []string{"audit.log"},
			want:     []string{"audit.log:1", "audit.log:2"},
			wantData: [][]byte{long, ev[0]},
		},
		{
			name:     "non-JSON lines passed through",
			files:    map[string][]byte{"audit.log": slices.Concat([]byte("I1122 06:25:37.638648 1 audit.go:42] starting\n"), lines(ev[0]), []byte("{\"truncated\":\n"))},
			paths:    []string{"audit.log"},
			want:     []string{"audit.log:1", "audit.log:2", "audit.log:3"},
			wantData: [][]byte{[]byte("I1122 06:25:37.638648 1 audit.go:42] starting"), ev[0], []byte(`{"truncated":`)},
		},
		{
			name:     "several inputs in order",
			files:    map[string][]byte{"a.log": lines(ev[0]), "b.log.gz": gzipped(t, lines(ev[1]))},
			paths:    []string{"b.log.gz", "a.log", "-"},
			stdin:    lines(ev[2]),
			opts:     logfile.Options{BatchSize: 1},
			want:     []string{"b.log.gz:1", "a.log:1", "stdin:1"},
			wantData: [][]byte{ev[1], ev[0], ev[2]},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				write(t, filepath.Join(dir, name), data)
			}
			var paths []string
			for _, p := range tt.paths {
				if p != "-" {
					p = filepath.Join(dir, p)
				}
				paths = append(paths, p)
			}
			var gotErrs []string
			opts := tt.opts
			opts.Cluster = "c1"
			opts.OnError = func(origin string, err error) error {
				gotErrs = append(gotErrs, strings.TrimPrefix(origin, dir+string(filepath.Separator))+": "+err.Error())
				return nil
			}
			r, err := logfile.Open(paths, bytes.NewReader(tt.stdin), opts)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer r.Close(context.Background())
			batch := opts.BatchSize
			if batch == 0 {
				batch = logfile.DefaultBatchSize
			}
			recs, _ := readAll(t, r, batch)

			got := origins(recs)
			for i := range got {
				got[i] = strings.TrimPrefix(got[i], dir+string(filepath.Separator))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("origins:\n got %q\nwant %q", got, tt.want)
			}
			for i, w := range tt.wantData {
				if i < len(recs) && !bytes.Equal(recs[i].Data, w) {
					t.Errorf("record %d (%s): data %.80q..., want %.80q...", i, recs[i].Origin, recs[i].Data, w)
				}
			}
			for _, rec := range recs {
				if rec.Cluster != "c1" {
					t.Errorf("record %s: cluster %q, want c1", rec.Origin, rec.Cluster)
				}
			}
			if len(gotErrs) != len(tt.wantErrs) {
				t.Fatalf("reported problems:\n got %q\nwant %q", gotErrs, tt.wantErrs)
			}
			for i, w := range tt.wantErrs {
				origin, text, _ := strings.Cut(w, ": ")
				if !strings.HasPrefix(gotErrs[i], origin+": ") || !strings.Contains(gotErrs[i], text) {
					t.Errorf("problem %d: %q, want origin %q and text %q", i, gotErrs[i], origin, text)
				}
			}
		})
	}
}

// TestReader_Read_Records checks what the records hold: event lists split
// into events the decoder accepts, other lines passed on for the engine
// to reject, and rotated files in event-time order.
func TestReader_Read_Records(t *testing.T) {
	ev := realEvents(t)
	dir := t.TempDir()
	// Event times: ev[3] < ev[0] < ev[1] < ev[5] < ev[4] < ev[2].
	write(t, filepath.Join(dir, "logs", "audit.log"), lines(ev[4], ev[2]))
	write(t, filepath.Join(dir, "logs", "audit-2026-11-22T05-56-31.320.log"), lines(ev[1], ev[5]))
	write(t, filepath.Join(dir, "logs", "audit-2026-11-22T04-10-00.000.log"), lines(ev[3], ev[0]))
	write(t, filepath.Join(dir, "list.json"), realEventList(t))
	write(t, filepath.Join(dir, "junk.log"), []byte("not json\n42\n{\"kind\":\"Pod\"}\n"))

	read := func(path string) []ingest.Record {
		r, err := logfile.Open([]string{path}, nil, logfile.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close(context.Background())
		recs, _ := readAll(t, r, logfile.DefaultBatchSize)
		return recs
	}
	var d ingest.Decoder

	t.Run("rotated set in time order", func(t *testing.T) {
		recs := read(filepath.Join(dir, "logs"))
		if len(recs) != 6 {
			t.Fatalf("%d records, want 6", len(recs))
		}
		var last ingest.Event
		for i, rec := range recs {
			e, err := d.Decode(rec.Data)
			if err != nil {
				t.Fatalf("%s: %v", rec.Origin, err)
			}
			if i > 0 && e.Time().Before(last.Time()) {
				t.Errorf("%s: event time %v before the previous %v", rec.Origin, e.Time(), last.Time())
			}
			last = *e.Clone()
		}
	})
	t.Run("event list items decode", func(t *testing.T) {
		recs := read(filepath.Join(dir, "list.json"))
		if len(recs) != 4 {
			t.Fatalf("%d records, want 4", len(recs))
		}
		for _, rec := range recs {
			e, err := d.Decode(rec.Data)
			if err != nil {
				t.Fatalf("%s: %v", rec.Origin, err)
			}
			if e.AuditID == "" || e.Time().IsZero() {
				t.Errorf("%s: decoded %+v", rec.Origin, e)
			}
		}
	})
	t.Run("non-events rejected by the decoder", func(t *testing.T) {
		recs := read(filepath.Join(dir, "junk.log"))
		if len(recs) != 3 {
			t.Fatalf("%d records, want 3", len(recs))
		}
		for _, rec := range recs {
			if _, err := d.Decode(rec.Data); !errors.Is(err, ingest.ErrNotEvent) {
				t.Errorf("%s: Decode error %v, want ErrNotEvent", rec.Origin, err)
			}
		}
	})
}

func TestReader_Read_TruncatedGzip(t *testing.T) {
	ev := realEvents(t)
	var all []byte
	for range 40 {
		all = append(all, lines(ev...)...)
	}
	z := gzipped(t, all)
	dir := t.TempDir()
	trunc := write(t, filepath.Join(dir, "trunc.log.gz"), z[:len(z)*6/10])
	next := write(t, filepath.Join(dir, "next.log"), lines(ev[0]))

	var problems []string
	r, err := logfile.Open([]string{trunc, next}, nil, logfile.Options{OnError: func(origin string, err error) error {
		problems = append(problems, origin+": "+err.Error())
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	recs, _ := readAll(t, r, logfile.DefaultBatchSize)
	if len(recs) < 2 || recs[len(recs)-1].Origin != next+":1" {
		t.Fatalf("got %d records ending with %q, want the readable part then %s:1", len(recs), origins(recs[len(recs)-1:]), next)
	}
	before := recs[:len(recs)-1]
	for i, rec := range before {
		if want := fmt.Sprintf("%s:%d", trunc, i+1); rec.Origin != want {
			t.Fatalf("record %d origin %q, want %q", i, rec.Origin, want)
		}
		if !bytes.Equal(rec.Data, ev[i%len(ev)]) {
			t.Fatalf("%s: data differs from the line written", rec.Origin)
		}
	}
	want := fmt.Sprintf("%s:%d: unexpected EOF", trunc, len(before)+1)
	if len(problems) != 1 || problems[0] != want {
		t.Errorf("problems %q, want [%q]", problems, want)
	}
}

func TestOpen_Errors(t *testing.T) {
	dir := t.TempDir()
	good := write(t, filepath.Join(dir, "good.log"), []byte("{}\n"))
	dangling := filepath.Join(dir, "dangling.log")
	if err := os.Symlink(filepath.Join(dir, "missing-target"), dangling); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(empty, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		paths []string
		want  []string
	}{
		{"missing file", []string{filepath.Join(dir, "nope.log")}, []string{"nope.log", "no such file or directory"}},
		{"dangling symlink", []string{good, dangling}, []string{"dangling.log", "no such file or directory"}},
		{"directory without log files", []string{empty}, []string{empty, "directory holds no log files"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := logfile.Open(tt.paths, nil, logfile.Options{})
			if err == nil {
				t.Fatal("Open succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q, want it to name %q", err, w)
				}
			}
		})
	}
}

// TestReader_Read_Unreadable covers inputs that fail after Open: each is
// reported with its name and the read goes on; OnError can stop it.
func TestReader_Read_Unreadable(t *testing.T) {
	ev := realEvents(t)
	dir := t.TempDir()
	gone := write(t, filepath.Join(dir, "gone.log"), lines(ev[0]))
	good := write(t, filepath.Join(dir, "good.log"), lines(ev[1]))

	t.Run("reported and skipped", func(t *testing.T) {
		var problems []string
		r, err := logfile.Open([]string{gone, "-", good}, nil, logfile.Options{OnError: func(origin string, err error) error {
			problems = append(problems, origin+": "+err.Error())
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close(context.Background())
		// Deleted (or replaced by something unreadable) after Open.
		if err := os.Remove(gone); err != nil {
			t.Fatal(err)
		}
		defer write(t, gone, lines(ev[0]))
		recs, _ := readAll(t, r, logfile.DefaultBatchSize)
		if got := origins(recs); !slices.Equal(got, []string{good + ":1"}) {
			t.Errorf("origins %q, want [%s:1]", got, good)
		}
		if len(problems) != 2 || !strings.HasPrefix(problems[0], gone+": ") || !strings.Contains(problems[0], "no such file") ||
			problems[1] != "stdin: no standard input" {
			t.Errorf("problems %q, want %s and stdin reported", problems, gone)
		}
	})
	t.Run("strict stops", func(t *testing.T) {
		stop := errors.New("stop")
		junk := write(t, filepath.Join(dir, "junk.gz"), []byte{0x1f, 0x8b, 0, 0})
		r, err := logfile.Open([]string{good, junk}, nil, logfile.Options{BatchSize: 1,
			OnError: func(string, error) error { return stop }})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close(context.Background())
		ctx := context.Background()
		b, err := r.Read(ctx)
		if err != nil || len(b.Records) != 1 {
			t.Fatalf("first Read: %d records, %v", len(b.Records), err)
		}
		if _, err := r.Read(ctx); !errors.Is(err, stop) {
			t.Errorf("second Read error %v, want the OnError error", err)
		}
	})
}

func TestReader_Counters(t *testing.T) {
	ev := realEvents(t)
	dir := t.TempDir()
	p := write(t, filepath.Join(dir, "audit.log"), lines(ev[0], ev[1], ev[2]))
	r, err := logfile.Open([]string{p}, nil, logfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	readAll(t, r, logfile.DefaultBatchSize)
	if want := int64(len(ev[0]) + len(ev[1]) + len(ev[2])); r.Lines != 3 || r.Bytes != want {
		t.Errorf("Lines, Bytes = %d, %d; want 3, %d", r.Lines, r.Bytes, want)
	}
}

// BenchmarkReader_Read reads a generated log of 100,000 events (about
// 120 MB, from the page cache), one op being the whole file.
func BenchmarkReader_Read(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	size, err := auditgen.Write(f, auditgen.Options{Seed: 1}, n)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	ctx := context.Background()
	events := 0
	for b.Loop() {
		r, err := logfile.Open([]string{path}, nil, logfile.Options{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			batch, err := r.Read(ctx)
			events += len(batch.Records)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		r.Close(ctx)
	}
	if events != n*b.N {
		b.Fatalf("read %d events, want %d", events, n*b.N)
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
}
