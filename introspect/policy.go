package introspect

import "time"

// Policy is a route's authorization rule, applied to every good token after
// validation (and after the cache: the cache holds token facts, the policy is
// per route).
type Policy struct {
	// Scopes must all be granted, else 403 insufficient_scope.
	Scopes []string
	// AnyScope needs at least one granted, else 403 insufficient_scope.
	AnyScope []string
	// Audience needs at least one of these in aud, else 401 invalid_token:
	// a token meant for another API is not a valid token here (RFC 9068 §4).
	Audience []string
	// Clients lists the client_ids this route serves, else 403
	// unauthorized_client.
	Clients []string
	// ACRValues: the token's acr must be one of these; MaxAge: its
	// auth_time must be at most this long ago. Else 401
	// insufficient_user_authentication (RFC 9470, see stepup.go).
	ACRValues []string
	MaxAge    time.Duration
	// Leeway is the clock skew allowed on auth_time; Now is the clock
	// (default time.Now).
	Leeway time.Duration
	Now    func() time.Time
	// Claims must all hold (require_claim), else 403 insufficient_scope.
	Claims []ClaimRequirement
}

// Authorize returns nil if d passes the policy. Checks run from "is this token
// for us at all" to "may it do this", so the client sees the most basic
// problem first.
func (p *Policy) Authorize(d *Decision) *Error {
	if len(p.Audience) > 0 && !hasAny(p.Audience, d.HasAudience) {
		return InvalidToken("audience", "the token is not meant for this API (audience mismatch)", nil)
	}
	if len(p.Clients) > 0 && !contains(p.Clients, d.ClientID()) {
		return &Error{Code: CodeUnauthorizedClient, Reason: "client_not_allowed",
			Description: "the client this token was issued to may not use this API"}
	}
	for _, s := range p.Scopes {
		if !d.HasScope(s) {
			return &Error{Code: CodeInsufficientScope, Reason: "missing_scope",
				Description: "the token lacks a required scope", Scope: p.RequiredScope()}
		}
	}
	if len(p.AnyScope) > 0 && !hasAny(p.AnyScope, d.HasScope) {
		return &Error{Code: CodeInsufficientScope, Reason: "missing_scope",
			Description: "the token needs one of the accepted scopes", Scope: p.RequiredScope()}
	}
	for _, c := range p.Claims {
		if e := c.authorize(d); e != nil {
			return e
		}
	}
	// Step-up last: a new login would not fix anything checked above.
	return p.authorizeAuthentication(d)
}

func contains(list []string, s string) bool {
	if s == "" {
		return false
	}
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// hasAny reports whether has holds for one of want. The decision's own
// Has* methods read its lists in place: Audience and Scopes copy them, on
// every request.
func hasAny(want []string, has func(string) bool) bool {
	for _, w := range want {
		if has(w) {
			return true
		}
	}
	return false
}
