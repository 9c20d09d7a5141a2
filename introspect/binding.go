package introspect

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"

	"github.com/tokengate/tokengate/introspect/dpop"
)

// Presentation is how a request presented its token: what a
// sender-constrained token's binding is checked against. It is built per
// request and never cached: the decision about the token is shared by
// every request that carries it, while a binding belongs to one request.
type Presentation struct {
	// DPoP: the token came as "Authorization: DPoP" (RFC 9449 §7.1).
	DPoP bool
	// ProofThumbprint is the RFC 7638 thumbprint of the key of a DPoP proof
	// that verified for this request; "" without one.
	ProofThumbprint string
	// CertThumbprint is CertThumbprint of the TLS client certificate the
	// request came with; "" without one.
	CertThumbprint string
	// RequireDPoP refuses tokens that are not DPoP-bound (dpop required).
	RequireDPoP bool
}

// Confirmation returns a decision's RFC 7800 cnf members that bind it to a
// sender: jkt (RFC 9449 §6), the SHA-256 thumbprint of a DPoP key, and
// x5t#S256 (RFC 8705 §3.1), that of a client certificate. Both come from
// the JWT or the introspection response (RFC 9449 §6.2, RFC 8705 §3.2),
// which the decision keeps in Claims.
func Confirmation(d *Decision) (jkt, x5t string, malformed bool) {
	if !d.HasConfirmation() {
		return "", "", false
	}
	c, ok := d.TopClaim("cnf")
	if !ok {
		return "", "", false
	}
	cnf, ok := c.(map[string]any)
	if !ok {
		return "", "", true
	}
	if v, ok := cnf["jkt"]; ok {
		if jkt, ok = v.(string); !ok || jkt == "" {
			return "", "", true
		}
	}
	if v, ok := cnf["x5t#S256"]; ok {
		if x5t, ok = v.(string); !ok || x5t == "" {
			return "", "", true
		}
	}
	return jkt, x5t, false
}

// CheckBinding enforces a sender-constrained token's binding for one
// request, whatever the route's dpop setting: a bound token whose binding
// is ignored is a bearer token again — the downgrade RFC 9449 §7.1 (a
// DPoP-bound token comes with the DPoP scheme and a proof of its key) and
// RFC 8705 §3 (the client certificate must match) exist to stop. It is called on every
// request, cached decisions included, and its failures are not cached:
// an attacker presenting a stolen token badly must not lock its holder
// out.
func CheckBinding(d *Decision, p Presentation) *Error {
	jkt, x5t, malformed := Confirmation(d)
	return CheckConfirmation(jkt, x5t, malformed, p)
}

// CheckConfirmation is CheckBinding with the decision's Confirmation
// already read (a caller that reads it once per decision, not per request).
func CheckConfirmation(jkt, x5t string, malformed bool, p Presentation) *Error {
	if malformed {
		// A cnf we cannot read may be a binding we would fail to enforce.
		e := InvalidToken("cnf_malformed", "the token's confirmation claim is malformed", nil)
		e.Hint = "the token's cnf is not an object with string jkt / x5t#S256 members (RFC 7800, RFC 9449 §6, RFC 8705 §3.1): the authorization server's token or introspection output is at fault"
		return e
	}
	if jkt != "" {
		if !p.DPoP {
			return &Error{Code: CodeInvalidToken, Reason: "dpop_bound_as_bearer",
				Description: "the token is DPoP-bound and must be sent with the DPoP scheme and a proof"}
		}
		if p.ProofThumbprint == "" || subtle.ConstantTimeCompare([]byte(p.ProofThumbprint), []byte(jkt)) != 1 {
			// RFC 9449 §4.3 check 12 / §7.1: the proof's key must be the
			// one the token is bound to.
			return &Error{Code: dpop.CodeInvalidProof, Reason: "dpop_key_mismatch",
				Description: "the DPoP proof is not signed with the key the token is bound to"}
		}
	} else if p.DPoP {
		// RFC 9449 §7.1: the DPoP scheme is for DPoP-bound tokens only; an
		// unbound token claiming it is not what the client thinks it holds.
		return &Error{Code: CodeInvalidToken, Reason: "dpop_unbound_token",
			Description: "the token is not DPoP-bound; send it with the Bearer scheme"}
	} else if p.RequireDPoP {
		return &Error{Code: CodeInvalidToken, Reason: "dpop_required",
			Description: "this resource requires a DPoP-bound token"}
	}
	if x5t != "" && (p.CertThumbprint == "" || subtle.ConstantTimeCompare([]byte(p.CertThumbprint), []byte(x5t)) != 1) {
		// RFC 8705 §3: "the protected resource MUST ... verify that the
		// certificate matches the certificate associated with the access
		// token. If they do not match, the resource access attempt MUST be
		// rejected with an error, per [RFC6750], using an HTTP 401 status
		// code and the invalid_token error code."
		e := &Error{Code: CodeInvalidToken, Reason: "certificate_mismatch",
			Description: "the token is bound to a TLS client certificate this connection did not present"}
		if p.CertThumbprint == "" {
			e.Hint = "the request came with no client certificate: certificate-bound tokens need Caddy's tls client_auth on this site, and TLS must end at Caddy (not at a proxy in front)"
		} else {
			e.Hint = "the connection's client certificate is not the one the token is bound to (cnf.x5t#S256)"
		}
		return e
	}
	return nil
}

// CertThumbprint is the base64url SHA-256 of a certificate's DER encoding,
// as x5t#S256 carries it (RFC 8705 §3.1).
func CertThumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ReplayCache returns the validator's DPoP replay cache: memory, then the
// shared Redis tier when one is configured, so that a fleet refuses a proof
// replayed to any of its members (RFC 9449 §11.1). One per validator: routes
// sharing the validator share it (a proof names its URI, so nothing is
// lost).
func (v *Validator) ReplayCache() dpop.ReplayCache {
	v.replayOnce.Do(func() {
		t := dpop.Tiered{Local: dpop.NewMemoryReplay(0, v.now)}
		if v.cfg.Cache.RedisURL != "" {
			t.Shared = v.cache
		}
		v.replay = t
	})
	return v.replay
}

// replayState is embedded in Validator.
type replayState struct {
	replayOnce sync.Once
	replay     dpop.ReplayCache
}
