package introspect

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// ClaimRequirement is one require_claim rule: the claim at Path must equal
// one of Values or, when it is an array, contain one of them. It is how a
// route says "only group admin" or "only tenant 42" without a second route
// of placeholders and matchers.
//
// Values are strings because that is how a config writes them; a claim that
// is a JSON number matches the decimal string of the same number (42, 42.0
// and 4.2e1 all match "42"), and a JSON boolean matches "true" or "false".
// Strings are compared exactly: "042" is not "42".
type ClaimRequirement struct {
	// Path is the claim name, or a dotted path into nested objects
	// (realm_access.roles); a claim name that itself contains dots is found
	// first (Decision.Claim).
	Path string
	// Values: at least one must match.
	Values []string
}

// Check reports a requirement that cannot be met by any token.
func (r ClaimRequirement) Check() error {
	if r.Path == "" || strings.HasPrefix(r.Path, ".") || strings.HasSuffix(r.Path, ".") || strings.Contains(r.Path, "..") {
		return fmt.Errorf("claim path %q is not a claim name or a dotted path", r.Path)
	}
	if len(r.Values) == 0 {
		return fmt.Errorf("claim %s: at least one value is required", r.Path)
	}
	return nil
}

// authorize applies r to d. The description names the claim and never its
// value: claims that decide access (groups, tenants, roles) are often
// personal or internal, and a client with the wrong ones has no use for a
// list of them. Neither are the required values said: they map out who may
// do what on this API.
func (r ClaimRequirement) authorize(d *Decision) *Error {
	v, ok := d.Claim(r.Path)
	if !ok || v == nil {
		// RFC 7662 servers send null for members they have no value for:
		// null is absent here as everywhere else.
		return &Error{Code: CodeInsufficientScope, Reason: "missing_claim",
			Description: "the token lacks the required claim " + r.Path,
			Hint:        "the token has no " + r.Path + " claim (require_claim); check the authorization server's claim mapping for this client or user"}
	}
	if !claimMatches(v, r.Values) {
		return &Error{Code: CodeInsufficientScope, Reason: "claim_value",
			Description: "the token's claim " + r.Path + " has none of the required values",
			Hint:        "the " + r.Path + " claim has none of the values require_claim lists (the value itself is not logged)"}
	}
	return nil
}

// claimMatches reports whether claim v equals one of want or, as an array,
// holds an element that does. Only one level of array is looked into: a
// nested array or an object is not a value a config can name.
func claimMatches(v any, want []string) bool {
	if list, ok := v.([]any); ok {
		for _, e := range list {
			if scalarMatches(e, want) {
				return true
			}
		}
		return false
	}
	return scalarMatches(v, want)
}

func scalarMatches(v any, want []string) bool {
	var num string // the claim as a canonical decimal, if it is a number
	switch t := v.(type) {
	case string:
		return slices.Contains(want, t)
	case bool:
		return slices.Contains(want, strconv.FormatBool(t))
	case json.Number:
		// A Decision gives every number back this way (its claims are
		// read with UseNumber): the exact digits the authorization
		// server sent.
		num = canonicalDecimal(string(t))
	default:
		return false
	}
	if num == "" {
		return false
	}
	for _, w := range want {
		if canonicalDecimal(w) == num {
			return true
		}
	}
	return false
}

// canonicalDecimal spells a JSON number (RFC 8259 §6) one way, so that two
// spellings of the same number compare equal as strings: sign, significant
// digits without leading or trailing zeros, and the power of ten that puts
// the decimal point in front of them ("4.20e1" and "42" are both "42e2",
// "-0.0" is "0"). It works on the digits, never through float64 or
// big.Rat: exact for any length (ids beyond 2^53), and no exponent such as
// 1e999999999 can make it compute anything large. It returns "" for
// anything that is not a JSON number, such as "042", "+1", " 1" or "0x1".
func canonicalDecimal(s string) string {
	i, neg := 0, false
	if i < len(s) && s[i] == '-' {
		neg = true
		i++
	}
	digitsFrom := func(j int) int {
		for j < len(s) && '0' <= s[j] && s[j] <= '9' {
			j++
		}
		return j
	}
	intEnd := digitsFrom(i)
	intPart := s[i:intEnd]
	if intPart == "" || len(intPart) > 1 && intPart[0] == '0' {
		return ""
	}
	i = intEnd
	frac := ""
	if i < len(s) && s[i] == '.' {
		end := digitsFrom(i + 1)
		if end == i+1 {
			return ""
		}
		frac, i = s[i+1:end], end
	}
	exp := int64(0)
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		end := digitsFrom(j)
		if end == j {
			return ""
		}
		e, err := strconv.ParseInt(strings.TrimPrefix(s[i+1:end], "+"), 10, 64)
		if err != nil || e > math.MaxInt32 || e < math.MinInt32 {
			// Far beyond any claim a config could name; refusing it
			// keeps the arithmetic below from overflowing.
			return ""
		}
		exp, i = e, end
	}
	if i != len(s) {
		return ""
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	// The point sits after intPart: its power of ten, counted in front of
	// the significant digits once the leading zeros are gone.
	point := int64(len(intPart)) + exp - int64(len(intPart+frac)-len(digits))
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return "0"
	}
	sign := ""
	if neg {
		sign = "-"
	}
	return sign + digits + "e" + strconv.FormatInt(point, 10)
}

// CheckClaimRequirements checks every requirement of a route.
func CheckClaimRequirements(reqs []ClaimRequirement) error {
	var errs []error
	for i, r := range reqs {
		if err := r.Check(); err != nil {
			errs = append(errs, fmt.Errorf("require_claim %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}
