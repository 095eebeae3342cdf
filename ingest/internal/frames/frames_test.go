package frames

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/ingest"
)

// TestRoundTrip frames entries, compresses them when that helps, and reads
// them back.
func TestRoundTrip(t *testing.T) {
	var p Pool
	for _, tc := range []struct {
		name     string
		data     func(i int) string
		compress bool
	}{
		{"audit JSON", func(i int) string {
			return fmt.Sprintf(`{"auditID":"%d","verb":"get","pad":%q}`, i, strings.Repeat("x", 300))
		}, true},
		{"no data", func(int) string { return "" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b []byte
			var in []ingest.Entry
			for i := range 20 {
				e := ingest.Entry{Key: fmt.Sprint("k", i), Record: ingest.Record{Data: []byte(tc.data(i))}}
				in = append(in, e)
				b = Append(b, e)
			}
			body, compressed := p.Compress(b)
			if compressed != tc.compress {
				t.Errorf("compressed %v, want %v", compressed, tc.compress)
			}
			enc := ""
			if compressed {
				enc = EncodingS2
			}
			data, buf, err := p.Body(body, enc, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Put(buf)
			fs, err := Decode(data, nil)
			if err != nil || len(fs) != len(in) {
				t.Fatalf("decoded %d frames, %v", len(fs), err)
			}
			for i, f := range fs {
				if string(f.Key) != in[i].Key || !bytes.Equal(f.Data, in[i].Data) {
					t.Fatalf("frame %d = %q %.20q", i, f.Key, f.Data)
				}
			}
		})
	}
}

func TestBad(t *testing.T) {
	var p Pool
	good := Append(nil, ingest.Entry{Key: "k", Record: ingest.Record{Data: []byte("{}")}})
	if fs, err := Decode(append(good, 0x05, 'a'), nil); err == nil || len(fs) != 1 {
		t.Errorf("a cut frame after a good one: %d frames, %v", len(fs), err)
	}
	big, _ := p.Compress(bytes.Repeat([]byte("a"), 1<<20))
	for _, tc := range []struct{ name, enc, want string }{
		{"unknown encoding", "zstd", "unknown encoding"},
		{"over the limit", EncodingS2, "over the payload limit"},
	} {
		if _, _, err := p.Body(big, tc.enc, 64<<10); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
