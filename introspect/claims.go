package introspect

import (
	"fmt"
	"time"
)

// The readers below serve introspection responses. They share the JWT
// path's strict readers (jwt_json.go), with one tolerance: RFC 7662 servers
// commonly send null for members they have no value for, which is read as
// absent.

// numericDate reads a NumericDate: a JSON number, never a string (see
// jwtNumericDate). ok=false means absent.
func numericDate(claims map[string]any, name string) (t time.Time, ok bool, err error) {
	if v, present := claims[name]; !present || v == nil {
		return time.Time{}, false, nil
	}
	return jwtNumericDate(claims, name)
}

// stringClaim returns a string claim; a present claim of another type is an
// error so that a confused server cannot smuggle e.g. an array as client_id.
func stringClaim(claims map[string]any, name string) (string, error) {
	if v, present := claims[name]; !present || v == nil {
		return "", nil
	}
	s, _, err := jwtOptionalString(claims, name)
	return s, err
}

// stringOrList accepts a string or an array of strings (aud: RFC 7519
// §4.1.3, RFC 7662 §2.2).
func stringOrList(claims map[string]any, name string) ([]string, error) {
	if v, present := claims[name]; !present || v == nil || v == "" {
		return nil, nil
	}
	list, _, err := jwtStringOrArray(claims, name)
	return list, err
}

func audienceClaim(claims map[string]any) ([]string, error) {
	return stringOrList(claims, "aud")
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
		return jwtSplitScope(s), nil
	}
	if v, ok := claims["scp"]; ok && v != nil {
		if s, ok := v.(string); ok {
			return jwtSplitScope(s), nil
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
	// For step-up (RFC 9470): typed like every other claim, never guessed.
	if d.ACR, err = stringClaim(claims, "acr"); err != nil {
		return nil, err
	}
	if d.AuthTime, _, err = numericDate(claims, "auth_time"); err != nil {
		return nil, err
	}
	return d, nil
}

// checkTimes applies exp, nbf and iat with one leeway. It is the only time
// check: both token paths and the decision cache (Validator) use it, so that
// "expired" means the same thing everywhere. A zero time means the claim is
// absent (whether that is allowed is the caller's business).
func checkTimes(d *Decision, now time.Time, leeway time.Duration) *Error {
	// RFC 7519 §4.1.4: the current time MUST be before exp (plus leeway).
	if !d.ExpiresAt.IsZero() && !now.Before(d.ExpiresAt.Add(leeway)) {
		e := InvalidToken("expired", "token expired", nil)
		e.Hint = fmt.Sprintf("expired at %s, now %s, leeway %s; if fresh tokens fail too, check the gateway's clock", d.ExpiresAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leeway)
		return e
	}
	// RFC 7519 §4.1.5.
	if !d.NotBefore.IsZero() && now.Add(leeway).Before(d.NotBefore) {
		e := InvalidToken("nbf", "token not yet valid", nil)
		e.Hint = fmt.Sprintf("nbf %s, now %s, leeway %s; check clock skew between the AS and the gateway", d.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leeway)
		return e
	}
	// RFC 7519 §4.1.6 leaves iat's use to the application; a token issued
	// in the future is a clock problem or a forgery.
	if !d.IssuedAt.IsZero() && now.Add(leeway).Before(d.IssuedAt) {
		e := InvalidToken("iat", "token not yet valid: issued in the future", nil)
		e.Hint = fmt.Sprintf("iat %s, now %s, leeway %s; check clock skew between the AS and the gateway", d.IssuedAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leeway)
		return e
	}
	return nil
}

// usableFor is how long d may still be used at now: until exp plus leeway,
// or (no exp) without a bound of its own.
func usableFor(d *Decision, now time.Time, leeway time.Duration) time.Duration {
	if d.ExpiresAt.IsZero() {
		return 1<<63 - 1
	}
	return d.ExpiresAt.Add(leeway).Sub(now)
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
