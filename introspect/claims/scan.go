package claims

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of objects and arrays ScanObject (and so
// ParseStrictObject) accepts, the top-level object counting as 1. Nothing
// that decides a token nests anywhere near this; a bound keeps a hostile
// document from costing recursion.
const MaxDepth = 64

// smallObject is how many member names an object may have before the
// duplicate check switches from a linear scan over a stack array to a map.
const smallObject = 32

// ScanObject checks b with ParseStrictObject's rules (valid UTF-8, exactly
// one JSON object, no duplicate member names in any object at any depth,
// nothing but JSON whitespace after it) and calls fn for each top-level
// member in document order with its name (unescaped; may alias b) and its
// raw value (a sub-slice of b, itself valid JSON, without surrounding
// whitespace). It returns fn's first error, or a descriptive error for bad
// JSON. It does not allocate for documents without escaped names and with
// fewer than 32 members per object (duplicate detection allocates a map for
// bigger objects, and an escaped name is unescaped into a new slice).
//
// Names are compared after unescaping exactly as encoding/json unescapes
// them (a lone surrogate escape reads as U+FFFD), so {"a":1,"\u0061":2} is
// a duplicate. Documents nested deeper than MaxDepth are refused.
//
// fn is called as members are read, so it may see members of a document
// that turns out to be invalid further on: act on what fn collected only
// when ScanObject returns nil.
func ScanObject(b []byte, fn func(name, value []byte) error) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	s := scanner{b: b}
	s.skipSpace()
	if s.i >= len(b) || b[s.i] != '{' {
		if s.i >= len(b) {
			return errors.New("not a JSON object: empty document")
		}
		return errors.New("not a JSON object")
	}
	if err := s.object(0, fn); err != nil {
		return err
	}
	s.skipSpace()
	if s.i != len(b) {
		return errors.New("data after the JSON object")
	}
	return nil
}

// StringValue decodes a raw JSON value that must be a string, such as a
// value ScanObject hands out. Anything else is an error that says what the
// value is instead ("must be a string, not a number"). It allocates only
// the result.
func StringValue(raw []byte) (string, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", &NotStringError{Kind: JSONKind(raw)}
	}
	s := scanner{b: raw}
	escaped, err := s.str()
	if err != nil {
		return "", err
	}
	if s.i != len(raw) {
		return "", errors.New("not a single JSON string")
	}
	if !utf8.Valid(raw) { // ScanObject's values are; a caller's may not be
		return "", errors.New("not valid UTF-8")
	}
	if !escaped {
		return string(raw[1 : len(raw)-1]), nil
	}
	return string(unquote(raw[1 : len(raw)-1])), nil
}

// NotStringError is StringValue's answer for a value of another type.
type NotStringError struct {
	// Kind is what the value is: "a number", "an object", "null", ...
	Kind string
}

func (e *NotStringError) Error() string { return "must be a string, not " + e.Kind }

// JSONKind names the type of a raw JSON value the way the claim readers'
// errors do ("a string", "a number", "a boolean", "null", "an array", "an
// object"), judging by its first byte.
func JSONKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch c := raw[0]; {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || '0' <= c && c <= '9':
		return "a number"
	}
	return "not JSON"
}

// scanner validates JSON in place. Its errors say where, by byte offset.
type scanner struct {
	b []byte
	i int
	// text is string(b), set for decoding: unescaped strings and numbers
	// are substrings of it, one allocation for the whole document.
	text string
}

func (s *scanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) errorf(what string) error {
	if s.i >= len(s.b) {
		return errors.New("invalid JSON: unexpected end of input, " + what)
	}
	return errors.New("invalid JSON at offset " + strconv.Itoa(s.i) + ": " + what)
}

// object reads the object that starts at s.i ('{'), at nesting depth
// depth (0 for the top level). fn, when not nil, gets every member.
func (s *scanner) object(depth int, fn func(name, value []byte) error) error {
	if depth >= MaxDepth {
		return s.errorf("nested deeper than " + strconv.Itoa(MaxDepth))
	}
	s.i++ // '{'
	var small [smallObject][]byte
	names := small[:0]
	var big map[string]struct{}
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return s.errorf("expected a member name")
		}
		start := s.i
		escaped, err := s.str()
		if err != nil {
			return err
		}
		name := s.b[start+1 : s.i-1]
		if escaped {
			name = unquote(name)
		}
		// Duplicate member names (RFC 7515 §4, RFC 7519 §4): refused.
		if big != nil {
			if _, dup := big[string(name)]; dup {
				return errDuplicate(name)
			}
			big[string(name)] = struct{}{}
		} else {
			for _, n := range names {
				if string(n) == string(name) {
					return errDuplicate(name)
				}
			}
			if len(names) < smallObject {
				names = append(names, name)
			} else {
				big = make(map[string]struct{}, 2*smallObject)
				for _, n := range names {
					big[string(n)] = struct{}{}
				}
				big[string(name)] = struct{}{}
			}
		}
		s.skipSpace()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return s.errorf("expected ':' after a member name")
		}
		s.i++
		s.skipSpace()
		vstart := s.i
		if err := s.value(depth); err != nil {
			return err
		}
		if fn != nil {
			if err := fn(name, s.b[vstart:s.i]); err != nil {
				return err
			}
		}
		if done, err := s.next('}'); done || err != nil {
			return err
		}
	}
}

// next reads what follows a member or an element: ',' (then false) or the
// container's closing byte (then true).
func (s *scanner) next(closing byte) (done bool, err error) {
	s.skipSpace()
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case ',':
			s.i++
			s.skipSpace()
			return false, nil
		case closing:
			s.i++
			return true, nil
		}
	}
	return false, s.errorf("expected ',' or '" + string(closing) + "'")
}

func errDuplicate(name []byte) error {
	return errors.New("duplicate member names: " + strconv.Quote(Shorten(string(name))))
}

// array reads the array that starts at s.i ('[').
func (s *scanner) array(depth int) error {
	if depth >= MaxDepth {
		return s.errorf("nested deeper than " + strconv.Itoa(MaxDepth))
	}
	s.i++ // '['
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		if err := s.value(depth); err != nil {
			return err
		}
		if done, err := s.next(']'); done || err != nil {
			return err
		}
	}
}

// value reads one value inside a container at depth depth.
func (s *scanner) value(depth int) error {
	if s.i >= len(s.b) {
		return s.errorf("expected a value")
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(depth+1, nil)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		_, err := s.str()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	return s.errorf("expected a value")
}

func (s *scanner) literal(lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return s.errorf("expected " + lit)
	}
	s.i += len(lit)
	return nil
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? (RFC 8259 §6).
func (s *scanner) number() error {
	b := s.b
	if b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(b) && b[s.i] == '0':
		s.i++
	case s.i < len(b) && '1' <= b[s.i] && b[s.i] <= '9':
		s.digits()
	default:
		return s.errorf("expected a digit in a number")
	}
	if s.i < len(b) && b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return s.errorf("expected a digit after the decimal point")
		}
	}
	if s.i < len(b) && (b[s.i] == 'e' || b[s.i] == 'E') {
		s.i++
		if s.i < len(b) && (b[s.i] == '+' || b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return s.errorf("expected a digit in the exponent")
		}
	}
	return nil
}

func (s *scanner) digits() int {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

// str reads the string that starts at s.i ('"') and reports whether it
// has escapes. UTF-8 was checked for the whole document already.
func (s *scanner) str() (escaped bool, err error) {
	b := s.b
	i := s.i + 1
	for {
		if i >= len(b) {
			s.i = i
			return false, s.errorf("unterminated string")
		}
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				s.i = i + 1
				return false, s.errorf("unterminated escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || getu4(b[i:]) < 0 {
					s.i = i
					return false, s.errorf(`invalid \u escape`)
				}
				i += 6
			default:
				s.i = i
				return false, s.errorf("invalid escape")
			}
		case c < 0x20:
			s.i = i
			return false, s.errorf("control character in a string")
		default:
			i++
		}
	}
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// unquote unescapes the contents of a JSON string that str accepted, the
// way encoding/json does: a surrogate pair is one rune, a lone surrogate
// is U+FFFD.
func unquote(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch s[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			rr := getu4(s[i:])
			i += 6
			if utf16.IsSurrogate(rr) {
				if dec := utf16.DecodeRune(rr, getu4(s[i:])); dec != unicode.ReplacementChar {
					i += 6
					out = utf8.AppendRune(out, dec)
					continue
				}
				rr = unicode.ReplacementChar
			}
			out = utf8.AppendRune(out, rr)
			continue
		default: // '"', '\\', '/'
			out = append(out, s[i+1])
		}
		i += 2
	}
	return out
}

// decodeValue decodes the value at s.i of a document ScanObject accepted,
// into what encoding/json with UseNumber gives for an any: map[string]any,
// []any (empty, not nil, for []), string, json.Number, bool or nil.
func (s *scanner) decodeValue() any {
	b := s.b
	switch c := b[s.i]; {
	case c == '{':
		m := make(map[string]any)
		s.i++
		s.skipSpace()
		if b[s.i] == '}' {
			s.i++
			return m
		}
		for {
			name := s.decodeString()
			s.skipSpace()
			s.i++ // ':'
			s.skipSpace()
			m[name] = s.decodeValue()
			s.skipSpace()
			if b[s.i] == '}' {
				s.i++
				return m
			}
			s.i++ // ','
			s.skipSpace()
		}
	case c == '[':
		a := make([]any, 0)
		s.i++
		s.skipSpace()
		if b[s.i] == ']' {
			s.i++
			return a
		}
		for {
			a = append(a, s.decodeValue())
			s.skipSpace()
			if b[s.i] == ']' {
				s.i++
				return a
			}
			s.i++ // ','
			s.skipSpace()
		}
	case c == '"':
		return s.decodeString()
	case c == 't':
		s.i += len("true")
		return true
	case c == 'f':
		s.i += len("false")
		return false
	case c == 'n':
		s.i += len("null")
		return nil
	}
	start := s.i
	_ = s.number()
	return json.Number(s.text[start:s.i])
}

// decodeString decodes the string at s.i of a document ScanObject accepted.
func (s *scanner) decodeString() string {
	start := s.i
	escaped, _ := s.str()
	if escaped {
		return string(unquote(s.b[start+1 : s.i-1]))
	}
	return s.text[start+1 : s.i-1]
}
