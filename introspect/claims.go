package introspect

import "time"

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
