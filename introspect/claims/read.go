package claims

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The claim readers below take an object from ParseStrictObject (numbers are
// json.Number) and never guess: a claim of the wrong type is an error, not
// a value converted into the right one. present reports whether the member
// exists at all, null included.

// Bounds of a NumericDate we accept: the epoch to the end of year 9999.
// Anything else is nonsense, and huge values would overflow time.Time.
const maxNumericDate = 253402300799

// NumericDate reads claim name as a NumericDate (RFC 7519 §2: a JSON number
// of seconds, possibly fractional). Strings are rejected even when they hold
// digits: authorization servers' own JWT libraries refuse "exp":"1700000000"
// in the client assertions they receive, and so do we, rather than guess.
func NumericDate(obj map[string]any, name string) (t time.Time, present bool, err error) {
	v, ok := obj[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, true, fmt.Errorf("%s claim must be a JSON number (NumericDate), not %s", name, jsonKind(v))
	}
	t, err = parseNumericDate([]byte(n), name)
	return t, true, err
}

// String reads a claim or header that must be a string if present.
func String(obj map[string]any, name string) (s string, present bool, err error) {
	v, ok := obj[name]
	if !ok {
		return "", false, nil
	}
	s, ok = v.(string)
	if !ok {
		return "", true, fmt.Errorf("%s must be a string, not %s", name, jsonKind(v))
	}
	return s, true, nil
}

// StringOrList reads aud or scp: a string or an array of strings (RFC 7519
// §4.1.3).
func StringOrList(obj map[string]any, name string) (list []string, present bool, err error) {
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
				return nil, true, fmt.Errorf("%s must be a string or an array of strings, found %s in the array", name, jsonKind(e))
			}
			out = append(out, s)
		}
		return out, true, nil
	}
	return nil, true, fmt.Errorf("%s must be a string or an array of strings, not %s", name, jsonKind(v))
}

// SplitScope splits a scope string on the space character only (RFC 6749
// §3.3).
func SplitScope(s string) []string {
	var out []string
	for _, f := range strings.Split(s, " ") {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

func jsonKind(v any) string {
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

// NewDecision fills a Decision from an introspection response's claims (RFC
// 7662 §2.2). Type errors are reported, never guessed around, with the
// tolerances RFC 7662 servers need: null is read as absent (servers commonly
// send it for members they have no value for), client_id falls back to azp,
// and scope may be an array. JWT access tokens are held to RFC 9068's
// stricter rules by the JWT verifier, which uses the same claim readers.
func NewDecision(obj map[string]any, source string) (*Decision, error) {
	return NewDecisionWith(obj, source, nil)
}

// NewDecisionWith is NewDecision sharing the strings in in.
func NewDecisionWith(obj map[string]any, source string, in *Interned) (*Decision, error) {
	f := DecisionFields{Claims: obj, Source: source, Interned: in}
	var err error
	if f.Subject, err = lenientString(obj, "sub"); err != nil {
		return nil, err
	}
	if f.ClientID, err = lenientString(obj, "client_id"); err != nil {
		return nil, err
	}
	if f.ClientID == "" {
		if f.ClientID, err = lenientString(obj, "azp"); err != nil {
			return nil, err
		}
	}
	if f.Issuer, err = lenientString(obj, "iss"); err != nil {
		return nil, err
	}
	if f.Audience, err = lenientStringOrList(obj, "aud"); err != nil {
		return nil, err
	}
	if f.Scopes, err = lenientScopes(obj); err != nil {
		return nil, err
	}
	if f.ExpiresAt, err = lenientNumericDate(obj, "exp"); err != nil {
		return nil, err
	}
	if f.NotBefore, err = lenientNumericDate(obj, "nbf"); err != nil {
		return nil, err
	}
	if f.IssuedAt, err = lenientNumericDate(obj, "iat"); err != nil {
		return nil, err
	}
	// For step-up (RFC 9470): typed like every other claim, never guessed.
	if f.ACR, err = lenientString(obj, "acr"); err != nil {
		return nil, err
	}
	if f.AuthTime, err = lenientNumericDate(obj, "auth_time"); err != nil {
		return nil, err
	}
	return f.Build(), nil
}

// absent reports a member that is missing or null.
func absent(obj map[string]any, name string) bool {
	v, present := obj[name]
	return !present || v == nil
}

func lenientNumericDate(obj map[string]any, name string) (time.Time, error) {
	if absent(obj, name) {
		return time.Time{}, nil
	}
	t, _, err := NumericDate(obj, name)
	return t, err
}

// lenientString returns a string claim; a present claim of another type is
// an error so that a confused server cannot smuggle e.g. an array as
// client_id.
func lenientString(obj map[string]any, name string) (string, error) {
	if absent(obj, name) {
		return "", nil
	}
	s, _, err := String(obj, name)
	return s, err
}

// lenientStringOrList also reads "" as absent.
func lenientStringOrList(obj map[string]any, name string) ([]string, error) {
	if absent(obj, name) || obj[name] == "" {
		return nil, nil
	}
	list, _, err := StringOrList(obj, name)
	return list, err
}

// lenientScopes reads scope as RFC 6749 §3.3's space-separated string (RFC
// 7662 §2.2, RFC 9068 §2.2.3) and, failing that, scp as an array or a string
// (used by Okta, Azure AD and others). A scope token never contains a space
// (RFC 6749 §3.3), so array elements are split on spaces too, as the JWT
// path splits them.
func lenientScopes(obj map[string]any) ([]string, error) {
	name := "scope"
	if v, ok := obj[name]; !ok || v == nil {
		name = "scp"
	}
	switch v := obj[name].(type) {
	case nil:
		return nil, nil
	case string:
		return SplitScope(v), nil
	}
	// Some servers send scope as an array; accept it rather than
	// rejecting a token the server considers valid.
	list, err := lenientStringOrList(obj, name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range list {
		out = append(out, SplitScope(s)...)
	}
	return out, nil
}
