package claims

import (
	"fmt"
	"strings"
	"time"
)

// IntrospectionRules judge an RFC 7662 §2.2 answer about a caller's token,
// as JWTRules judge a JWT's claims: the answer must say active as a
// boolean (anything else is the server's fault, never the caller's), the
// token must be an access token, issued by Issuer when set and the answer
// names one, and within its times with Leeway.
type IntrospectionRules struct {
	Issuer string
	Leeway time.Duration
	// Interned holds the configured issuer and audiences for the decisions
	// to share.
	Interned *Interned
}

// Decision judges answer, the strictly parsed introspection response, at
// now.
func (r *IntrospectionRules) Decision(answer map[string]any, now time.Time) (*Decision, *Error) {
	active, ok := answer["active"].(bool)
	if !ok {
		// "active" missing, a string ("true"), or a number: a broken
		// server. Accepting "true" as a string would be fail-open.
		return nil, Unavailable("bad_response", "the introspection response lacks a boolean \"active\" member (RFC 7662 §2.2)",
			fmt.Errorf("active is %T", answer["active"]))
	}
	if !active {
		return nil, InvalidToken("inactive", "the token is not active (expired, revoked, or unknown to the authorization server)", nil)
	}
	d, err := NewDecisionWith(answer, "introspection", r.Interned)
	if err != nil {
		return nil, Unavailable("bad_response", "the introspection response has a claim of the wrong type", err)
	}
	// A server that introspects refresh tokens too says so (RFC 7662
	// token_type; token_use in ORY Hydra and others): only access tokens
	// may open the API.
	if tt, _ := answer["token_type"].(string); strings.EqualFold(tt, "refresh_token") {
		return nil, InvalidToken("not_access_token", "the token is not an access token", nil)
	}
	if tu, ok := answer["token_use"].(string); ok && !strings.EqualFold(tu, "access_token") && !strings.EqualFold(tu, "access") {
		return nil, InvalidToken("not_access_token", "the token is not an access token", nil)
	}
	if r.Issuer != "" && d.Issuer() != "" && d.Issuer() != r.Issuer {
		return nil, InvalidToken("issuer", "the token was issued by another issuer", nil)
	}
	if e := d.CheckTimes(now, r.Leeway); e != nil {
		return nil, e
	}
	return d, nil
}
