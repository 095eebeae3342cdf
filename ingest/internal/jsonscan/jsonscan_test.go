package jsonscan

import (
	"errors"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

func nested(n int, inner string) string {
	return strings.Repeat(`{"a":[`, n) + inner + strings.Repeat(`]}`, n)
}

// checkLikeFastjson checks that Value accepts doc exactly when fastjson
// does, apart from fastjson's nesting limit, and counts depth as it does.
func checkLikeFastjson(t *testing.T, doc []byte) {
	t.Helper()
	var p fastjson.Parser
	_, perr := p.ParseBytes(doc)
	end, depth, err := Value(doc, 0)
	if err == nil {
		err = End(doc, end)
	}
	var se *SyntaxError
	if err != nil && !errors.As(err, &se) {
		t.Fatalf("Value(%q): error %v is not a *SyntaxError", doc, err)
	}
	tooDeep := err == nil && depth > MaxDepth
	switch {
	case perr == nil && err != nil:
		t.Fatalf("Value(%q) = %v; fastjson accepts it", doc, err)
	case perr == nil && tooDeep:
		t.Fatalf("Value(%q): depth %d over %d; fastjson accepts it", doc, depth, MaxDepth)
	case perr != nil && err == nil && !tooDeep:
		t.Fatalf("Value(%q) accepts it (depth %d); fastjson: %v", doc, depth, perr)
	}
}

func TestValue_LikeFastjson(t *testing.T) {
	docs := []string{
		`{}`, `[]`, `1`, `-`, `+`, `-1.5e+3`, `1x`, `NaN`, `nan`, `-Inf`, `+inf`, `infinity`, `Infx`, `x`, `T`,
		`true`, `tru`, `truex`, `false`, `null`, `nul`, `nulll`, `"a"`, `"a\"b"`, `"a\\"`, `"a\\\"`, `"\u00e9\x"`,
		"\"\x01\xff\"", ` { "a" : [ 1 , 2 ] } `, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`,
		`{"a":1 "b":2}`, `[1 2]`, `{"a":1}}`, `[[]]]`, `{"a":[}`, `{"a\"":"b"}`, `{"\\":"x"}`, ``, ` `, "\f1",
		`{"a":1}` + "\x00", `"`, `"\`, `[`, `{`, `{"`, `{"a`, `{"a"`, `{"a":`, `{"a":1`, `{"a":1,`, `[1`, `[1,`,
		nested(149, `1`), nested(150, `{}`), nested(150, `1`), nested(151, `[]`), nested(400, `"deep"`),
		strings.Repeat("[", 300) + strings.Repeat("]", 300), strings.Repeat("[", 301) + strings.Repeat("]", 301),
		strings.Repeat("[", 299) + "1" + strings.Repeat("]", 299), strings.Repeat("[", 300) + "1" + strings.Repeat("]", 300),
	}
	for _, d := range docs {
		checkLikeFastjson(t, []byte(d))
	}
}

func TestValue_Depth(t *testing.T) {
	for _, tt := range []struct {
		doc   string
		depth int
	}{
		{`1`, 1}, {`{}`, 1}, {`{"a":1}`, 2}, {`[[],[[]]]`, 3}, {`{"a":{"b":"c"}}`, 3}, {nested(400, `{}`), 801},
	} {
		_, d, err := Value([]byte(tt.doc), 0)
		if err != nil || d != tt.depth {
			t.Errorf("Value(%.40q) depth %d, %v; want %d", tt.doc, d, err, tt.depth)
		}
	}
}

func TestMembers(t *testing.T) {
	type member struct{ name, value string }
	read := func(doc string) ([]member, error) {
		b := []byte(doc)
		var got []member
		_, err := Members(b, 0, func(name []byte, start int) (int, error) {
			end, _, err := Value(b, start)
			if err == nil {
				got = append(got, member{Name(name), string(b[start:end])})
			}
			return end, err
		})
		return got, err
	}
	got, err := read(` { "a" : 1 , "b\u0063":{"x":[1,{"y":"}"}]}, "d":"\"" } `)
	want := []member{{"a", "1"}, {"bc", `{"x":[1,{"y":"}"}]}`}, {"d", `"\""`}}
	if err != nil || len(got) != len(want) {
		t.Fatalf("members %q, %v; want %q", got, err, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("member %d = %q, want %q", i, got[i], want[i])
		}
	}
	// A document cut off keeps the members before the cut.
	got, err = read(`{"auditID":"x","verb":"get","requestObject":{"spec":[[[`)
	var se *SyntaxError
	if !errors.As(err, &se) || len(got) != 2 || got[1].value != `"get"` {
		t.Fatalf("cut document: members %q, error %v", got, err)
	}
	if _, err := read(`[1]`); err == nil {
		t.Error("an array read as an object")
	}
}

func TestElements(t *testing.T) {
	b := []byte(`[ {"a":1} , "two" ,[3,[4]], ` + nested(400, `1`) + ` ,{"cut":`)
	var got []string
	var depths []int
	_, err := Elements(b, 0, func(e []byte, depth int) {
		got = append(got, string(e))
		depths = append(depths, depth)
	})
	if err == nil || len(got) != 4 || got[0] != `{"a":1}` || got[1] != `"two"` || got[2] != `[3,[4]]` || depths[3] != 801 {
		t.Fatalf("elements %.80q (depths %v), error %v", got, depths, err)
	}
}

func TestStringAndType(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{`"plain"`, "plain", true}, {`"a\"b\u0041"`, `a"bA`, true}, {`"bad \x esc"`, `bad \x esc`, true},
		{`42`, "", false}, {`null`, "", false},
	} {
		got, ok := String([]byte(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("String(%s) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	for in, want := range map[string]string{`{}`: "object", `[]`: "array", `"s"`: "string", `1`: "number",
		`NaN`: "number", `null`: "null", `true`: "true", `false`: "false"} {
		if got := Type([]byte(in)); got != want {
			t.Errorf("Type(%s) = %s, want %s", in, got, want)
		}
	}
}

// FuzzValue checks the scanner against fastjson on any input: both accept
// the same documents, nesting aside, and Members and Elements split what
// Value accepts into parts fastjson reads back.
//
//	go test ./ingest/internal/jsonscan -run '^$' -fuzz FuzzValue -fuzztime 60s
func FuzzValue(f *testing.F) {
	for _, s := range []string{
		`{"kind":"EventList","items":[{"a":1},{"b":[2,"x\"]"]}]}`, `[1,"a",{"b":null},true,false,NaN,-Inf]`,
		` {"a" : "\\" , "b\u0022": 1e-3 } `, nested(10, `"x"`), nested(160, `1`), `{"a":1,}`, `[1 2]`, `"\`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		checkLikeFastjson(t, doc)
		var p fastjson.Parser
		check := func(part []byte, depth int) {
			if depth > MaxDepth-1 {
				return
			}
			if _, err := p.ParseBytes(part); err != nil {
				t.Fatalf("part %q of %q: fastjson: %v", part, doc, err)
			}
		}
		Elements(doc, 0, check)
		Members(doc, 0, func(name []byte, start int) (int, error) {
			check(append(append([]byte{'"'}, name...), '"'), 1)
			end, depth, err := Value(doc, start)
			if err == nil {
				check(doc[start:end], depth)
			}
			return end, err
		})
	})
}
