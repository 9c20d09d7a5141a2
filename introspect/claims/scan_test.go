package claims

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// referenceParseStrictObject is ParseStrictObject as it was before
// ScanObject: encoding/json, then the colons outside strings counted
// against the decoded maps' entries to find duplicates. It is the oracle
// the scanner is checked against.
func referenceParseStrictObject(b []byte) (map[string]any, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, errors.New("not a JSON object")
	}
	if len(bytes.TrimLeft(b[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, errors.New("data after the JSON object")
	}
	if countMembers(b) != countDecodedMembers(obj) {
		return nil, errors.New("duplicate member names")
	}
	return obj, nil
}

// countMembers counts the colons outside strings of valid JSON b.
func countMembers(b []byte) int {
	n := 0
	outsideStrings(b, func(c byte) {
		if c == ':' {
			n++
		}
	})
	return n
}

// outsideStrings calls fn with every byte of valid JSON b that is not
// inside a string (quotes excluded).
func outsideStrings(b []byte, fn func(c byte)) {
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case !inString && c == '"':
			inString = true
		case !inString:
			fn(c)
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			inString = false
		}
	}
}

// countDecodedMembers counts the entries of every map in v.
func countDecodedMembers(v any) int {
	switch v := v.(type) {
	case map[string]any:
		n := len(v)
		for _, e := range v {
			n += countDecodedMembers(e)
		}
		return n
	case []any:
		n := 0
		for _, e := range v {
			n += countDecodedMembers(e)
		}
		return n
	}
	return 0
}

// nestingDepth is the deepest nesting of objects and arrays in valid JSON b.
func nestingDepth(b []byte) int {
	depth, deepest := 0, 0
	outsideStrings(b, func(c byte) {
		switch c {
		case '{', '[':
			depth++
			deepest = max(deepest, depth)
		case '}', ']':
			depth--
		}
	})
	return deepest
}

type scannedMember struct {
	name  string
	value []byte
}

func scanMembers(b []byte) ([]scannedMember, error) {
	var out []scannedMember
	err := ScanObject(b, func(name, value []byte) error {
		out = append(out, scannedMember{string(name), value})
		return nil
	})
	return out, err
}

// checkAgainstReference fails t unless ScanObject and ParseStrictObject
// accept b exactly when the reference does (documents deeper than MaxDepth
// aside, which they refuse), and ScanObject's members are the reference's.
func checkAgainstReference(t *testing.T, b []byte) {
	t.Helper()
	want, refErr := referenceParseStrictObject(b)
	if refErr == nil && nestingDepth(b) > MaxDepth {
		want, refErr = nil, errors.New("too deep")
	}
	members, err := scanMembers(b)
	if (err == nil) != (refErr == nil) {
		t.Fatalf("ScanObject(%q) = %v, the reference says %v", b, err, refErr)
	}
	got, perr := ParseStrictObject(b)
	if (perr == nil) != (refErr == nil) {
		t.Fatalf("ParseStrictObject(%q) = %v, the reference says %v", b, perr, refErr)
	}
	if refErr != nil {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseStrictObject(%q) = %v, the reference %v", b, got, want)
	}
	if len(members) != len(want) {
		t.Fatalf("ScanObject(%q) saw %d members, the reference %d", b, len(members), len(want))
	}
	for _, m := range members {
		ref, ok := want[m.name]
		if !ok {
			t.Fatalf("ScanObject(%q) saw member %q, the reference has none", b, m.name)
		}
		if len(m.value) == 0 || len(bytes.TrimSpace(m.value)) != len(m.value) || !json.Valid(m.value) {
			t.Fatalf("ScanObject(%q): member %q has raw value %q", b, m.name, m.value)
		}
		dec := json.NewDecoder(bytes.NewReader(m.value))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil || !reflect.DeepEqual(v, ref) {
			t.Fatalf("ScanObject(%q): member %q is %q (%v, %v), the reference %#v", b, m.name, m.value, v, err, ref)
		}
		s, serr := StringValue(m.value)
		if rs, isString := ref.(string); isString != (serr == nil) || isString && s != rs {
			t.Fatalf("StringValue(%q) = %q, %v; the reference %#v", m.value, s, serr, ref)
		}
	}
}

func TestScanObjectNastyCases(t *testing.T) {
	deep := func(n int) string { return `{"a":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + `}` }
	for _, tc := range []struct {
		name, doc string
		ok        bool
	}{
		{"an object", `{"a":1,"b":{"c":[{"d":true}]},"e":null,"f":false,"g":"x","h":-0.5e+3}`, true},
		{"empty object", ` { } `, true},
		{"whitespace everywhere", "\t{ \"a\" :\n[ 1 , 2 ] ,\r\"b\" : { } }\n", true},
		{"a duplicate member", `{"active":false,"active":true}`, false},
		{"a nested duplicate", `{"a":{"b":{"c":1,"c":2}}}`, false},
		{"a duplicate in an array's object", `{"a":[1,{"b":1,"b":2}]}`, false},
		{"the same name in sibling objects", `{"a":{"b":1},"c":{"b":2}}`, true},
		{"an escaped name equal to another", `{"a":1,"\u0061":2}`, false},
		{"escaped names equal to each other", `{"\u0061":1,"\u0061":2}`, false},
		{"a surrogate pair equal to the raw rune", "{\"\\ud83d\\ude00\":1,\"\U0001F600\":2}", false},
		{"a lone surrogate equal to U+FFFD", `{"\ud800":1,"\ufffd":2}`, false},
		{"lone surrogates", `{"a":"\ud800","b":"\udc00x","\udbff":"\ud800\u0041"}`, true},
		{"a reversed surrogate pair", `{"a":"\udc00\ud800"}`, true},
		{"an extra closing brace", `{"a":1}}`, false},
		{"data after the object", `{"a":1} x`, false},
		{"a second object", `{"a":1}{"a":2}`, false},
		{"invalid UTF-8 in a string", "{\"a\":\"\xff\"}", false},
		{"invalid UTF-8 in a name", "{\"\xc3\":1}", false},
		{"an encoded surrogate", "{\"a\":\"\xed\xa0\x80\"}", false},
		{"a control character in a string", "{\"a\":\"x\ty\"}", false},
		{"a bad escape", `{"a":"\x"}`, false},
		{"a short \\u escape", `{"a":"\u12"}`, false},
		{"a leading zero", `{"a":01}`, false},
		{"a bare minus", `{"a":-}`, false},
		{"a trailing dot", `{"a":1.}`, false},
		{"an empty exponent", `{"a":1e}`, false},
		{"a plus sign", `{"a":+1}`, false},
		{"a trailing comma", `{"a":1,}`, false},
		{"a trailing comma in an array", `{"a":[1,]}`, false},
		{"a single quote", `{'a':1}`, false},
		{"tru", `{"a":tru}`, false},
		{"nul at the end", `{"a":nul`, false},
		{"unterminated", `{"a":"b`, false},
		{"null", `null`, false},
		{"an array", `[{"a":1}]`, false},
		{"empty", ``, false},
		{"a BOM", "\ufeff{}", false},
		{"nesting at the bound", deep(MaxDepth), true},
		{"nesting beyond the bound", deep(MaxDepth + 1), false},
		{"very deep nesting", deep(100000), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := scanMembers([]byte(tc.doc))
			if (err == nil) != tc.ok {
				t.Fatalf("ScanObject(%q) = %v; want ok=%v", tc.doc, err, tc.ok)
			}
			if len(tc.doc) < 1000 {
				checkAgainstReference(t, []byte(tc.doc))
			}
		})
	}
}

func TestScanObjectMembers(t *testing.T) {
	members, err := scanMembers([]byte(` {"alg" : "RS256", "n\u0061me":{"x":[1, 2]} ,"z":-1.5E-3 } `))
	if err != nil {
		t.Fatal(err)
	}
	want := []scannedMember{{"alg", []byte(`"RS256"`)}, {"name", []byte(`{"x":[1, 2]}`)}, {"z", []byte(`-1.5E-3`)}}
	if !reflect.DeepEqual(members, want) {
		t.Fatalf("members %q, want %q", members, want)
	}
	stop := errors.New("stop")
	calls := 0
	if err := ScanObject([]byte(`{"a":1,"b":2}`), func(_, _ []byte) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("fn's error: got %v after %d calls", err, calls)
	}
}

func TestScanObjectBigObjects(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{`)
	for i := range 100 {
		if i > 0 {
			b.WriteString(`,`)
		}
		b.WriteString(`"m` + string(rune('A'+i%26)) + string(rune('a'+i/26)) + `":1`)
	}
	ok := b.String() + `}`
	if _, err := scanMembers([]byte(ok)); err != nil {
		t.Fatal(err)
	}
	checkAgainstReference(t, []byte(ok))
	for _, dup := range []string{`,"mAa":2}`, `,"mZc":2}`, `,"\u006dVd":2}`} {
		doc := []byte(b.String() + dup)
		if _, err := scanMembers(doc); err == nil {
			t.Fatalf("ScanObject accepted a duplicate in a big object: %s", dup)
		}
		checkAgainstReference(t, doc)
	}
}

func TestStringValue(t *testing.T) {
	for _, tc := range []struct {
		raw, want, err string
	}{
		{`"abc"`, "abc", ""},
		{`"a\"b\\c\/\n\u00e9\ud83d\ude00\ud800"`, "a\"b\\c/\né\U0001F600\uFFFD", ""},
		{`12`, "", "must be a string, not a number"},
		{`null`, "", "must be a string, not null"},
		{`{"a":1}`, "", "must be a string, not an object"},
		{`["a"]`, "", "must be a string, not an array"},
		{`true`, "", "must be a string, not a boolean"},
		{`"a`, "", "unterminated"},
		{`"a"x`, "", "not a single JSON string"},
		{"\"\xff\"", "", "not valid UTF-8"},
		{"\"a\tb\"", "", "control character"},
	} {
		got, err := StringValue([]byte(tc.raw))
		if tc.err == "" && (err != nil || got != tc.want) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("StringValue(%s) = %q, %v; want %q, %q", tc.raw, got, err, tc.want, tc.err)
		}
	}
}

func TestScanObjectDoesNotAllocate(t *testing.T) {
	doc := []byte(`{"alg":"RS256","typ":"at+jwt","kid":"rsa-1","x":{"y":[1,2.5,{"z":null}],"w":"\u00e9"}}`)
	n := 0
	fn := func(_, _ []byte) error { n++; return nil }
	if a := testing.AllocsPerRun(100, func() {
		if err := ScanObject(doc, fn); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("ScanObject allocates %v times per document", a)
	}
	raw := []byte(`"RS256"`)
	if a := testing.AllocsPerRun(100, func() {
		if _, err := StringValue(raw); err != nil {
			t.Fatal(err)
		}
	}); a > 1 {
		t.Fatalf("StringValue allocates %v times", a)
	}
}

// FuzzScanObjectAgreesWithParseStrictObject: ScanObject and
// ParseStrictObject accept exactly what the reference (encoding/json plus
// the duplicate count, ParseStrictObject before the scanner) accepts, bar
// nesting deeper than MaxDepth, and ScanObject's top-level names and raw
// values are the reference's members.
func FuzzScanObjectAgreesWithParseStrictObject(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`, `{"a":{"b":[1,"x:y"]}}`, `{"a":1,"a":2}`, `{"a":"\"b\":1"}`, `{} `,
		`{"a":1,"\u0061":2}`, `{"\ud800":1,"\ufffd":2}`, `{"a":-0.0e+5,"b":[true,false,null]}`,
		`{"a":1}}`, `{"a":1} x`, "{\"a\":\"\xff\"}", `{"a":"\ud83d\ude00"}`,
		`{"alg":"RS256","typ":"at+jwt","kid":"k"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAgainstReference(t, b)
	})
}
