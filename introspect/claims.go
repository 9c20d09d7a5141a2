package introspect

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// numericDate reads a NumericDate (RFC 7519 §2): a JSON number of seconds.
// Strings are refused on purpose: some servers send "exp":"1700000000"
// (see the Oath troubleshooting seed), and accepting them would hide a broken
// authorization server. ok=false means absent.
func numericDate(claims map[string]any, name string) (t time.Time, ok bool, err error) {
	v, present := claims[name]
	if !present || v == nil {
		return time.Time{}, false, nil
	}
	var f float64
	switch n := v.(type) {
	case json.Number:
		f, err = n.Float64()
		if err != nil {
			return time.Time{}, false, fmt.Errorf("claim %q is not a number", name)
		}
	case float64:
		f = n
	default:
		return time.Time{}, false, fmt.Errorf("claim %q must be a JSON number (NumericDate), got %T", name, v)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, false, fmt.Errorf("claim %q is out of range", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true, nil
}

// stringClaim returns a string claim; a present claim of another type is an
// error so that a confused server cannot smuggle e.g. an array as client_id.
func stringClaim(claims map[string]any, name string) (string, error) {
	v, ok := claims[name]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("claim %q must be a string, got %T", name, v)
	}
	return s, nil
}

// audienceClaim accepts aud as a string or an array of strings (RFC 7519 §4.1.3,
// RFC 7662 §2.2).
func audienceClaim(claims map[string]any) ([]string, error) {
	return stringOrList(claims, "aud")
}

func stringOrList(claims map[string]any, name string) ([]string, error) {
	v, ok := claims[name]
	if !ok || v == nil {
		return nil, nil
	}
	switch a := v.(type) {
	case string:
		if a == "" {
			return nil, nil
		}
		return []string{a}, nil
	case []any:
		out := make([]string, 0, len(a))
		for _, e := range a {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("claim %q must hold strings, found %T", name, e)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("claim %q must be a string or an array of strings, got %T", name, v)
	}
}

// scopeClaims reads scope as RFC 6749 §3.3's space-separated string (RFC 7662
// §2.2, RFC 9068 §2.2.3) and, failing that, scp as an array or a string (used
// by Okta, Azure AD and others).
func scopeClaims(claims map[string]any) ([]string, error) {
	if v, ok := claims["scope"]; ok && v != nil {
		s, ok := v.(string)
		if !ok {
			// Some servers send scope as an array; accept it rather than
			// rejecting a token the server considers valid.
			return stringOrList(claims, "scope")
		}
		return strings.Fields(s), nil
	}
	if v, ok := claims["scp"]; ok && v != nil {
		if s, ok := v.(string); ok {
			return strings.Fields(s), nil
		}
		return stringOrList(claims, "scp")
	}
	return nil, nil
}

// DecisionFromClaims fills a Decision from a claim set shared by introspection
// responses and JWT payloads. Type errors are reported, never guessed around.
func DecisionFromClaims(claims map[string]any, source string) (*Decision, error) {
	d := &Decision{Claims: claims, Source: source}
	var err error
	if d.Subject, err = stringClaim(claims, "sub"); err != nil {
		return nil, err
	}
	if d.ClientID, err = stringClaim(claims, "client_id"); err != nil {
		return nil, err
	}
	if d.ClientID == "" {
		if d.ClientID, err = stringClaim(claims, "azp"); err != nil {
			return nil, err
		}
	}
	if d.Issuer, err = stringClaim(claims, "iss"); err != nil {
		return nil, err
	}
	if d.Audience, err = audienceClaim(claims); err != nil {
		return nil, err
	}
	if d.Scopes, err = scopeClaims(claims); err != nil {
		return nil, err
	}
	if d.ExpiresAt, _, err = numericDate(claims, "exp"); err != nil {
		return nil, err
	}
	if d.NotBefore, _, err = numericDate(claims, "nbf"); err != nil {
		return nil, err
	}
	if d.IssuedAt, _, err = numericDate(claims, "iat"); err != nil {
		return nil, err
	}
	return d, nil
}

// checkTimes applies exp and nbf with leeway. It is shared by both token
// paths so that "expired" means the same thing everywhere.
func checkTimes(d *Decision, now time.Time, leeway time.Duration) *Error {
	if !d.ExpiresAt.IsZero() && !now.Before(d.ExpiresAt.Add(leeway)) {
		return InvalidToken("expired", "token expired", nil)
	}
	if !d.NotBefore.IsZero() && now.Add(leeway).Before(d.NotBefore) {
		return InvalidToken("not_yet_valid", "token not yet valid", nil)
	}
	return nil
}

func containsAny(have, want []string) bool {
	for _, w := range want {
		for _, h := range have {
			if h == w {
				return true
			}
		}
	}
	return false
}
