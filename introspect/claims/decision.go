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
//
// A gateway holds up to a million of these, and every garbage collection
// walks them, so a Decision is compact (see layout.go): its strings share one
// allocation with the claims that are not held in fields, kept as the JSON
// the token carried and decoded only when a placeholder, forward_claim or
// require_claim asks for one; the issuer and audience the gateway is
// configured with are shared by all decisions instead of copied into each.
type Decision struct {
	// data is sub, client_id, scope and acr back to back (ends in end),
	// then the other claims as one JSON object ("" when there are none).
	data string
	// ext holds what does not fit the compact fields: shared (Interned)
	// for the configured issuer and audiences, private otherwise.
	ext *extras
	// exp is unix nanoseconds, or noTime.
	exp  int64
	memo atomic.Pointer[memoBox]
	// rel is nbf, iat and auth_time in seconds relative to exp (to the
	// epoch without exp), or noRel.
	rel   [3]int32
	end   [4]uint16
	flags flags
}

// DecisionFields are the parts of a Decision, for code that builds one:
// a custom TokenVerifier, tests. Zero values mean absent.
type DecisionFields struct {
	// Subject is the sub claim; may be empty for client_credentials tokens.
	Subject  string
	ClientID string
	// Scopes never contain spaces (RFC 6749 §3.3 separates scopes by them).
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
	// Interned, when set, holds strings the Decision can share instead of
	// copying (the configured issuer and audiences).
	Interned *Interned
}

// Subject is the sub claim; empty for many client_credentials tokens.
func (d *Decision) Subject() string { return d.str(0) }

// ClientID is client_id, else azp.
func (d *Decision) ClientID() string { return d.str(1) }

// ScopeString is the space-separated scope list, as RFC 6749 §3.3 writes it.
func (d *Decision) ScopeString() string { return d.str(2) }

// ACR is the acr claim (RFC 9068 §2.2.1), "" when absent.
func (d *Decision) ACR() string { return d.str(3) }

// rest is the claims not held in fields, as a JSON object, or "".
func (d *Decision) rest() string {
	if d.flags&wide != 0 {
		return d.data
	}
	return d.data[d.end[3]:]
}

// Issuer is the iss claim.
func (d *Decision) Issuer() string {
	if d.flags&issSet == 0 {
		return ""
	}
	return d.ext.issuer
}

// Source says how the token was checked: "introspection" or "jwt".
func (d *Decision) Source() string {
	switch d.flags.source() {
	case sourceJWT:
		return "jwt"
	case sourceIntrospection:
		return "introspection"
	case sourceOther:
		return d.ext.source
	}
	return ""
}

// Scopes is the granted scope list, a new slice on every call.
func (d *Decision) Scopes() []string { return SplitScope(d.ScopeString()) }

// HasScope reports whether the token was granted scope s.
func (d *Decision) HasScope(s string) bool {
	if s == "" {
		return false
	}
	for rest := d.ScopeString(); rest != ""; {
		var f string
		f, rest, _ = strings.Cut(rest, " ")
		if f == s {
			return true
		}
	}
	return false
}

// Audience is the aud list, a new slice on every call.
func (d *Decision) Audience() []string {
	if i, ok := d.flags.audIndex(); ok {
		return []string{d.ext.audiences[i]}
	}
	if d.ext == nil {
		return nil
	}
	return append([]string(nil), d.ext.audience...)
}

// HasAudience reports whether aud names a.
func (d *Decision) HasAudience(a string) bool {
	if i, ok := d.flags.audIndex(); ok {
		return d.ext.audiences[i] == a
	}
	if d.ext == nil {
		return false
	}
	for _, have := range d.ext.audience {
		if have == a {
			return true
		}
	}
	return false
}

// ExpiresAt is exp; zero when the token carries none.
func (d *Decision) ExpiresAt() time.Time {
	switch {
	case d.exp != noTime:
		return time.Unix(0, d.exp).UTC()
	case d.ext != nil:
		return d.ext.exp
	}
	return time.Time{}
}

// NotBefore is nbf; zero when absent.
func (d *Decision) NotBefore() time.Time { return d.relTime(relNBF) }

// IssuedAt is iat; zero when absent.
func (d *Decision) IssuedAt() time.Time { return d.relTime(relIAT) }

// AuthTime is auth_time; zero when absent.
func (d *Decision) AuthTime() time.Time { return d.relTime(relAuthTime) }

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

// HasConfirmation reports whether the token carries a cnf claim (RFC 7800):
// whether it may be bound to a sender. Answered from a flag, so that the
// many unbound tokens cost no claim lookup per request.
func (d *Decision) HasConfirmation() bool { return d.flags&cnfPresent != 0 }

// UserID is the identity Caddy's {http.auth.user.id} carries: sub, else
// client_id (client_credentials tokens often have no sub in introspection
// responses).
func (d *Decision) UserID() string {
	if s := d.Subject(); s != "" {
		return s
	}
	return d.ClientID()
}

// Verdict is what the decision cache stores for a token hash: either a
// Decision, or the invalid_token rejection to repeat (negative caching).
// Temporary failures are never cached.
type Verdict struct {
	Decision  *Decision `json:"decision,omitempty"`
	Rejection *Error    `json:"rejection,omitempty"`
	// FreshUntil is when a positive verdict should be re-checked, in unix
	// nanoseconds (a time.Time would double the size of every cached
	// verdict). It is only set (non-zero) when a stale grace period keeps
	// the entry cached longer (served only while the authorization server
	// is unreachable).
	FreshUntil int64 `json:"fresh_until,omitempty"`
}
