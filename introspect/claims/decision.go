package claims

import (
	"strings"
	"sync/atomic"
	"time"
)

// Decision is what the gateway knows about a good token: who it belongs to,
// what it may do, and until when. It is cached (keyed by a hash of the token)
// and shared between requests, so it must be treated as immutable.
type Decision struct {
	// Subject is the sub claim; may be empty for client_credentials tokens.
	Subject  string   `json:"sub,omitempty"`
	ClientID string   `json:"client_id,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
	Audience []string `json:"aud,omitempty"`
	Issuer   string   `json:"iss,omitempty"`
	// ExpiresAt is zero when the token carries no expiry (introspection
	// responses may omit exp); the cache then uses its own ttl alone.
	ExpiresAt time.Time `json:"exp,omitempty"`
	NotBefore time.Time `json:"nbf,omitempty"`
	IssuedAt  time.Time `json:"iat,omitempty"`
	// ACR and AuthTime say how and when the user authenticated (acr,
	// auth_time: RFC 9068 §2.2.1), for step-up (RFC 9470); empty and zero
	// when the token does not say.
	ACR      string    `json:"acr,omitempty"`
	AuthTime time.Time `json:"auth_time,omitzero"`
	// Claims holds every claim as the authorization server sent it, for
	// placeholders and forward_claim.
	Claims map[string]any `json:"claims,omitempty"`
	// Source says how the token was checked: "introspection" or "jwt".
	Source string `json:"source,omitempty"`

	// memo is what a consumer derived from the decision once (see Memo).
	memo atomic.Pointer[memoBox]
}

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
	if d.Subject != "" {
		return d.Subject
	}
	return d.ClientID
}

// ScopeString is the space-separated scope list, as RFC 6749 §3.3 writes it.
func (d *Decision) ScopeString() string { return strings.Join(d.Scopes, " ") }

// HasScope reports whether the token was granted scope s.
func (d *Decision) HasScope(s string) bool {
	for _, have := range d.Scopes {
		if have == s {
			return true
		}
	}
	return false
}

// Claim looks a claim up by dotted path ("realm_access.roles"), descending
// into nested JSON objects.
func (d *Decision) Claim(path string) (any, bool) {
	var cur any = d.Claims
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
