package introspect

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// jwtB64 is the only base64 a JWS compact serialization may use: URL
// alphabet, no padding (RFC 7515 §2, §7.1), and Strict so that non-zero
// trailing bits are rejected. With one accepted encoding per byte string,
// a token has exactly one spelling: nobody can mint a "different" token
// (another cache key, another log fingerprint) from a good one.
var jwtB64 = base64.RawURLEncoding.Strict()

// jwtDecodeSegment decodes one base64url segment.
func jwtDecodeSegment(seg string) ([]byte, error) {
	return jwtB64.DecodeString(seg)
}

// parseStrictObject is the one JSON reader for everything that decides a
// token: JOSE headers, JWT claims sets, introspection and token-endpoint
// responses. It requires valid UTF-8 (RFC 8725 §3.7), exactly one JSON
// object, no duplicate member names in any object at any depth (RFC 7515
// §4, RFC 7519 §4: a parser MUST reject them or keep the last; rejecting
// means no parser differential with whatever the upstream or the
// authorization server's own library reads — {"active":false,"active":true}
// must not be true here and false there), and nothing after it. Numbers
// come back as json.Number.
func parseStrictObject(b []byte) (map[string]any, error) {
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
	if n := jwtCountMembers(b); n != countDecodedMembers(obj) {
		return nil, errors.New("duplicate member names")
	}
	return obj, nil
}

// jwtCountMembers counts the members of every object in b, which must
// already be known to be valid JSON: the colons outside strings. Cheaper
// than a json.Decoder token walk, which allocates for every token.
func jwtCountMembers(b []byte) int {
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

// Bounds of a NumericDate we accept: the epoch to the end of year 9999.
// Anything else is nonsense, and huge values would overflow time.Time.
const jwtMaxNumericDate = 253402300799

// jwtNumericDate reads claim name as a NumericDate (RFC 7519 §2: a JSON
// number of seconds, possibly fractional). Strings are rejected even when
// they hold digits: the seeds show AS-side libraries rejecting "exp":"..."
// and so do we, rather than guess.
func jwtNumericDate(claims map[string]any, name string) (t time.Time, present bool, err error) {
	v, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, true, fmt.Errorf("%s claim must be a JSON number (NumericDate), not %s", name, jwtJSONKind(v))
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > jwtMaxNumericDate {
		return time.Time{}, true, fmt.Errorf("%s claim is out of range", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true, nil
}

// jwtOptionalString reads a claim or header that must be a string if present.
func jwtOptionalString(obj map[string]any, name string) (string, bool, error) {
	v, ok := obj[name]
	if !ok {
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", true, fmt.Errorf("%s must be a string, not %s", name, jwtJSONKind(v))
	}
	return s, true, nil
}

// jwtStringOrArray reads aud/scp: a string or an array of strings.
func jwtStringOrArray(obj map[string]any, name string) ([]string, bool, error) {
	v, ok := obj[name]
	if !ok {
		return nil, false, nil
	}
	switch v := v.(type) {
	case string:
		return []string{v}, true, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, true, fmt.Errorf("%s must be a string or an array of strings, found %s in the array", name, jwtJSONKind(e))
			}
			out = append(out, s)
		}
		return out, true, nil
	}
	return nil, true, fmt.Errorf("%s must be a string or an array of strings, not %s", name, jwtJSONKind(v))
}

func jwtJSONKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// jwtShorten bounds attacker-controlled text before it reaches a log line
// or an error.
func jwtShorten(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
