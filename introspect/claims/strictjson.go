package claims

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// ParseStrictObject is the one JSON reader for everything that decides a
// token: JOSE headers, JWT claims sets, introspection and token-endpoint
// responses. It requires valid UTF-8 (RFC 8725 §3.7), exactly one JSON
// object, no duplicate member names in any object at any depth (RFC 7515
// §4, RFC 7519 §4: a parser MUST reject them or keep the last; rejecting
// means no parser differential with whatever the upstream or the
// authorization server's own library reads — {"active":false,"active":true}
// must not be true here and false there), and nothing after it. Numbers
// come back as json.Number.
func ParseStrictObject(b []byte) (map[string]any, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil { // nil: the JSON was null
		return nil, errors.New("not a JSON object")
	}
	if len(bytes.TrimLeft(b[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, errors.New("data after the JSON object")
	}
	// encoding/json keeps the last of duplicate names silently; maps with
	// fewer entries in all than the document has members means there was
	// one somewhere.
	if n := countMembers(b); n != countDecodedMembers(obj) {
		return nil, errors.New("duplicate member names")
	}
	return obj, nil
}

// countMembers counts the members of every object in b, which must
// already be known to be valid JSON: the colons outside strings. Cheaper
// than a json.Decoder token walk, which allocates for every token.
func countMembers(b []byte) int {
	n := 0
	inString, escaped := false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case ':':
			n++
		}
	}
	return n
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
