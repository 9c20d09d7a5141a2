package claims

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseStrictObjectRefusesWhatParsersReadDifferently(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		ok        bool
	}{
		{"an object", `{"a":1,"b":{"c":[{"d":true}]}}`, true},
		{"colons and quotes inside strings", `{"a":"x:\"y\":z","b:c":1}`, true},
		{"whitespace after the object", "{\"a\":1}\r\n\t ", true},
		{"a duplicate member", `{"active":false,"active":true}`, false},
		{"a duplicate member in a nested object", `{"a":{"b":1,"b":2}}`, false},
		{"a duplicate member in an array's object", `{"a":[{"b":1,"b":2}]}`, false},
		{"data after the object", `{"a":1}{"a":2}`, false},
		{"null", `null`, false},
		{"an array", `[{"a":1}]`, false},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := ParseStrictObject([]byte(tc.doc))
			if (err == nil) != tc.ok {
				t.Fatalf("ParseStrictObject(%q) = %v, %v; want ok=%v", tc.doc, obj, err, tc.ok)
			}
			// The fuzz target's own duplicate check must agree.
			if dup := hasDuplicateMember([]byte(tc.doc)); dup != strings.Contains(tc.name, "duplicate") {
				t.Fatalf("hasDuplicateMember(%q) = %v", tc.doc, dup)
			}
		})
	}
}

// FuzzParseStrictObject: whatever is accepted is one valid JSON object with
// no duplicate member, as a json.Decoder token walk (a slower, independent
// reading) sees it.
func FuzzParseStrictObject(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"b":[1,"x:y"]}}`, `{"a":1,"a":2}`, `{"a":"\"b\":1"}`, `{} `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		obj, err := ParseStrictObject(b)
		if err != nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if hasDuplicateMember(b) {
			t.Fatalf("accepted %q, which has a duplicate member", b)
		}
		_ = obj
	})
}

// hasDuplicateMember walks the tokens of valid JSON b, keeping the member
// names of every open object.
func hasDuplicateMember(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		names map[string]bool // nil for an array
		key   bool            // the next string is a member name
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		top := (*frame)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && top.names != nil && top.key
		if top != nil && top.names != nil {
			top.key = !top.key
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &frame{names: map[string]bool{}, key: true})
			case '[':
				stack = append(stack, &frame{})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].names != nil {
					stack[len(stack)-1].key = true
				}
				continue
			}
			if top != nil && top.names != nil {
				top.key = true // the value was a container; a name comes next
			}
		case string:
			if isKey {
				if top.names[v] {
					return true
				}
				top.names[v] = true
			}
		}
	}
}
