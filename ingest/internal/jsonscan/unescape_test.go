package jsonscan

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/valyala/fastjson"
)

// sameAsFastjson checks AppendString against the parser on the string at
// the start of b.
func sameAsFastjson(t *testing.T, b []byte) {
	t.Helper()
	got, end, ok := AppendString([]byte("x"), b, 0)
	var p fastjson.Parser
	if !ok {
		if _, err := p.ParseBytes(b); err == nil && len(b) > 0 && b[0] == '"' {
			t.Fatalf("%q: not closed here, but the parser reads a string", b)
		}
		return
	}
	v, err := p.ParseBytes(b[:end])
	if err != nil {
		t.Fatalf("%q: closed at %d, but the parser refuses %q: %v", b, end, b[:end], err)
	}
	want := append([]byte("x"), v.GetStringBytes()...)
	if !bytes.Equal(got, want) {
		t.Fatalf("%q: got %q, the parser %q", b, got, want)
	}
	// From the first quote or escape on, with the plain bytes before it
	// already copied, as the event decoder reads it.
	if k := QuoteOrEscape(b, 1); k > 0 {
		rest, restEnd, ok := AppendStringRest(append([]byte("x"), b[1:k]...), b, k)
		if !ok || restEnd != end || !bytes.Equal(rest, want) {
			t.Fatalf("%q from %d: got %q, %d, %v; want %q, %d", b, k, rest, restEnd, ok, want, end)
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{
		`""`, `"plain"`, `"a\"b"`, `"\\"`, `"\\\\"`, `"x\\\"y"`, `"\/\b\f\n\r\t"`,
		`"\u00e9t\u00C9"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ud83dx"`, `"\ud83d\u0041"`, `"\ude00\ud83d"`,
		`"\u12"`, `"\u12g4"`, `"\q\x"`, `"{\"kind\":\"Event\",\"auditID\":\"a\"}"`, `"unclosed`, `"ends \"`,
		`"ctl` + "\x01\n" + `"`, `"` + "\xff\xfe" + `"`, `"\ud83d\ud83d"`, `"tail" ,"next"`,
	} {
		sameAsFastjson(t, []byte(s))
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{`"a\"b"`, `"\ud83d\ude00"`, `"\u12"`, `"\\\""`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || b[0] != '"' {
			b = append([]byte{'"'}, b...)
		}
		sameAsFastjson(t, b)
	})
}

// BenchmarkAppendString unescapes an audit event carried as a JSON string,
// as EKS and AKS carry them: go test -bench AppendString ./ingest/internal/jsonscan/
func BenchmarkAppendString(b *testing.B) {
	gz, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "real-apiserver", "run5", "audit.log.gz"))
	if err != nil {
		b.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		b.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		b.Fatal(err)
	}
	var quoted [][]byte
	size := 0
	for _, l := range bytes.Split(raw, []byte{'\n'}) {
		if len(l) > 0 {
			q, _ := json.Marshal(string(l))
			quoted = append(quoted, q)
			size += len(q)
		}
	}
	b.SetBytes(int64(size))
	var dst []byte
	for b.Loop() {
		for _, q := range quoted {
			var ok bool
			if dst, _, ok = AppendString(dst[:0], q, 0); !ok {
				b.Fatalf("%.80s: not read", q)
			}
		}
	}
}
