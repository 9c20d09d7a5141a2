package claims

import (
	"strings"
	"sync/atomic"
	"time"
)

// Decision is what the gateway knows about a good token: who it belongs to,
// what it may do, and until when. It is cached (keyed by a hash of the token)
// and shared between requests, and it is immutable: build one with
// DecisionFields.Build, NewDecision or the JWT verifier, and read it through
// its methods.
type Decision struct {
	subject, clientID, issuer, acr, source string
	scopes, audience                       []string
	expiresAt, notBefore, issuedAt         time.Time
	authTime                               time.Time
	claims                                 map[string]any

	// memo is what a consumer derived from the decision once (see Memo).
	memo atomic.Pointer[memoBox]
}

// DecisionFields are the parts of a Decision, for code that builds one:
// a custom TokenVerifier, tests. Zero values mean absent.
type DecisionFields struct {
	// Subject is the sub claim; may be empty for client_credentials tokens.
	Subject  string
	ClientID string
	Scopes   []string
	Audience []string
	Issuer   string
	// ExpiresAt is zero when the token carries no expiry (introspection
	// responses may omit exp); the cache then uses its own ttl alone.
	ExpiresAt time.Time
	NotBefore time.Time
	IssuedAt  time.Time
	// ACR and AuthTime say how and when the user authenticated (acr,
	// auth_time: RFC 9068 §2.2.1), for step-up (RFC 9470).
	ACR      string
	AuthTime time.Time
	// Claims holds every claim as the authorization server sent it (JSON
	// numbers as json.Number), for placeholders and forward_claim.
	Claims map[string]any
	// Source says how the token was checked: "introspection" or "jwt".
	Source string
}

// Build makes the immutable Decision. The slices and the claims map are
// the Decision's from then on: the caller must not change them.
func (f DecisionFields) Build() *Decision {
	d := new(Decision)
	d.fill(f)
	return d
}

func (d *Decision) fill(f DecisionFields) {
	d.subject, d.clientID, d.issuer, d.acr, d.source = f.Subject, f.ClientID, f.Issuer, f.ACR, f.Source
	d.scopes, d.audience = f.Scopes, f.Audience
	d.expiresAt, d.notBefore, d.issuedAt, d.authTime = f.ExpiresAt, f.NotBefore, f.IssuedAt, f.AuthTime
	d.claims = f.Claims
}

// Fields returns d's parts (copies of its lists; the claims are decoded
// again, so the caller may keep and change them).
func (d *Decision) Fields() DecisionFields {
	return DecisionFields{
		Subject: d.subject, ClientID: d.clientID, Issuer: d.issuer, ACR: d.acr, Source: d.source,
		Scopes: d.Scopes(), Audience: d.Audience(),
		ExpiresAt: d.expiresAt, NotBefore: d.notBefore, IssuedAt: d.issuedAt, AuthTime: d.authTime,
		Claims: d.claims,
	}
}

// Subject is the sub claim; empty for many client_credentials tokens.
func (d *Decision) Subject() string { return d.subject }

// ClientID is client_id, else azp.
func (d *Decision) ClientID() string { return d.clientID }

// Issuer is the iss claim.
func (d *Decision) Issuer() string { return d.issuer }

// ACR is the acr claim (RFC 9068 §2.2.1), "" when absent.
func (d *Decision) ACR() string { return d.acr }

// Source says how the token was checked: "introspection" or "jwt".
func (d *Decision) Source() string { return d.source }

// Scopes is the granted scope list, a new slice on every call.
func (d *Decision) Scopes() []string { return append([]string(nil), d.scopes...) }

// Audience is the aud list, a new slice on every call.
func (d *Decision) Audience() []string { return append([]string(nil), d.audience...) }

// HasAudience reports whether aud names a.
func (d *Decision) HasAudience(a string) bool {
	for _, have := range d.audience {
		if have == a {
			return true
		}
	}
	return false
}

// ExpiresAt is exp; zero when the token carries none.
func (d *Decision) ExpiresAt() time.Time { return d.expiresAt }

// NotBefore is nbf; zero when absent.
func (d *Decision) NotBefore() time.Time { return d.notBefore }

// IssuedAt is iat; zero when absent.
func (d *Decision) IssuedAt() time.Time { return d.issuedAt }

// AuthTime is auth_time; zero when absent.
func (d *Decision) AuthTime() time.Time { return d.authTime }

type memoBox struct{ v any }

// Memo returns build(d), calling build once per Decision (concurrent first
// callers may each call it; all of them get the value stored first). It lets
// the code that uses a cached decision on every request derive its
// per-request values once per decision instead: the Caddy glue boxes its
// placeholder values here, so a cache hit allocates nothing for them.
// build must depend on d alone. A Decision has one memo: callers should
// type-check the result and fall back to build(d) if it is not theirs.
func (d *Decision) Memo(build func(*Decision) any) any {
	if m := d.memo.Load(); m != nil {
		return m.v
	}
	m := &memoBox{v: build(d)}
	if d.memo.CompareAndSwap(nil, m) {
		return m.v
	}
	return d.memo.Load().v
}

// UserID is the identity Caddy's {http.auth.user.id} carries: sub, else
// client_id (client_credentials tokens often have no sub in introspection
// responses).
func (d *Decision) UserID() string {
	if d.subject != "" {
		return d.subject
	}
	return d.clientID
}

// ScopeString is the space-separated scope list, as RFC 6749 §3.3 writes it.
func (d *Decision) ScopeString() string { return strings.Join(d.scopes, " ") }

// HasScope reports whether the token was granted scope s.
func (d *Decision) HasScope(s string) bool {
	for _, have := range d.scopes {
		if have == s {
			return true
		}
	}
	return false
}

// TopClaim is the claim called exactly name (no dotted path).
func (d *Decision) TopClaim(name string) (any, bool) {
	v, ok := d.claims[name]
	return v, ok
}

// Claim looks a claim up by dotted path ("realm_access.roles"), descending
// into nested JSON objects.
func (d *Decision) Claim(path string) (any, bool) {
	var cur any = d.claims
	for path != "" {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		// A claim name may itself contain dots (URIs as claim names are
		// common, RFC 7519 §4.2); prefer the longest exact match.
		if v, ok := obj[path]; ok {
			return v, true
		}
		head, rest, found := strings.Cut(path, ".")
		if !found {
			return nil, false
		}
		cur, ok = obj[head]
		if !ok {
			return nil, false
		}
		path = rest
	}
	return cur, true
}

// Verdict is what the decision cache stores for a token hash: either a
// Decision, or the invalid_token rejection to repeat (negative caching).
// Temporary failures are never cached.
type Verdict struct {
	Decision  *Decision `json:"decision,omitempty"`
	Rejection *Error    `json:"rejection,omitempty"`
	// FreshUntil is when a positive verdict should be re-checked. It is
	// only set when a stale grace period keeps the entry cached longer
	// (served only while the authorization server is unreachable).
	FreshUntil time.Time `json:"fresh_until,omitzero"`
}
