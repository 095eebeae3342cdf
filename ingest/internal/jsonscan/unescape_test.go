package jsonscan

import (
	"bytes"
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
