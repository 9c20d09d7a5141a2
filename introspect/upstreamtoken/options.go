// Package upstreamtoken mints the gateway's own short-lived JWT access tokens
// for upstreams: the phantom-token pattern. Once the gateway has accepted a
// caller's token (opaque or JWT, possibly long-lived), the upstream gets a
// token the gateway signed instead, which it can verify offline against the
// gateway's JWKS and read as "the gateway checked this caller". The caller's
// token never reaches the upstream.
//
// Tokens are RFC 9068 access tokens (typ at+jwt) with iss, aud, sub,
// client_id, scope, iat, exp and jti, plus acr, auth_time and cnf when the
// caller's token had them and any claims the operator names. Their exp is
// at most TTL ahead and never past the caller token's exp. Signing happens
// once per decision and lifetime, not per request (Minter.For with a Reuse).
//
// It knows nothing of Caddy: the glue maps its config to Options, calls New,
// serves Minter.JWKS, and puts Minter.For's token on the upstream request.
package upstreamtoken

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Lifetimes. A phantom token only has to live from the gateway to the
// upstream, so a minute is plenty; an hour is the most we sign, because a
// leaked upstream token is as good as the caller's for that long.
const (
	DefaultTTL = 60 * time.Second
	MaxTTL     = time.Hour
)

// JWKSMaxAge is the Cache-Control max-age of the served JWKS. A key listed
// as next must have been published at least this long (plus whatever the
// upstreams add to it) before it signs anything.
const JWKSMaxAge = 5 * time.Minute

// Options configure a Minter. SigningKeyFile, Issuer and Audience are
// required.
type Options struct {
	// SigningKeyFile is a PEM (PKCS#8, PKCS#1, SEC1) or JWK / JWK Set file
	// with the private key the gateway signs with. RSA signs RS256, EC
	// P-256 ES256 (P-384/P-521: ES384/ES512), Ed25519 EdDSA, unless the JWK
	// names another alg that fits it. The kid is the JWK's own, else the
	// key's RFC 7638 thumbprint.
	SigningKeyFile string
	// NextSigningKeyFile, if set, is a second private key whose public half
	// is published in the JWKS but which signs nothing: the next key before
	// a rotation (so upstreams know it before it is used), or the previous
	// one just after (so tokens it signed still verify until they expire).
	NextSigningKeyFile string
	// Issuer is the iss of every token: the gateway's own identifier.
	Issuer string
	// Audience is the aud of every token: the upstream(s) it is meant for.
	Audience []string
	// TTL bounds exp − iat. Default DefaultTTL, at most MaxTTL, whole
	// seconds (iat and exp are).
	TTL time.Duration
	// Claims names further top-level claims of the caller's token to copy,
	// with their values as the authorization server sent them.
	Claims []string
	// JWKSPath is where the host serves JWKS (no token needed). Empty: not
	// served.
	JWKSPath string
	// CallerIssuers are the issuers whose tokens the route accepts. Issuer
	// must be none of them, so that an upstream can tell the gateway's
	// token from a caller's by iss alone.
	CallerIssuers []string
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

// setClaims are the claims the gateway sets itself: a configured claims
// entry must not overwrite them with the caller's.
var setClaims = map[string]bool{"iss": true, "sub": true, "aud": true, "exp": true, "nbf": true, "iat": true, "jti": true, "client_id": true, "scope": true}

// copiedClaims are copied whenever the caller's token has them: RFC 9068 §2.2
// and §2.2.1 (acr, auth_time for step-up decisions upstream), RFC 7800 (cnf:
// the caller's token was bound to a key, so is the one derived from it).
var copiedClaims = []string{"acr", "auth_time", "cnf"}

// WithDefaults returns o with the defaults filled in.
func (o Options) WithDefaults() Options {
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	return o
}

// Check reports a configuration that New would refuse, without reading the
// key files. Messages name the sub-directive at fault.
func (o Options) Check() error {
	o = o.WithDefaults()
	if o.SigningKeyFile == "" {
		return errors.New("upstream_token: signing_key is required")
	}
	if o.NextSigningKeyFile == o.SigningKeyFile {
		return errors.New("upstream_token: next_signing_key is the signing_key file; it must be another key")
	}
	if o.Issuer == "" || strings.ContainsAny(o.Issuer, " \t\r\n") {
		return errors.New("upstream_token: issuer is required (the gateway's own identifier, e.g. https://gateway.example.com), without spaces")
	}
	for _, iss := range o.CallerIssuers {
		if iss != "" && iss == o.Issuer {
			return fmt.Errorf("upstream_token: issuer %s is the issuer of the tokens this route accepts; give the gateway its own, so that an upstream can tell a gateway token from a caller's", o.Issuer)
		}
	}
	if len(o.Audience) == 0 {
		return errors.New("upstream_token: audience is required: it is what an upstream checks to know the token is meant for it (RFC 9068 §4)")
	}
	for _, a := range o.Audience {
		if a == "" {
			return errors.New("upstream_token: audience: empty value")
		}
	}
	if o.TTL < time.Second || o.TTL > MaxTTL {
		return fmt.Errorf("upstream_token: ttl %v: must be between 1s and %v", o.TTL, MaxTTL)
	}
	for _, c := range o.Claims {
		switch {
		case c == "":
			return errors.New("upstream_token: claims: empty name")
		case setClaims[c]:
			return fmt.Errorf("upstream_token: claims: %s is set by the gateway itself", c)
		}
	}
	if p := o.JWKSPath; p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# \t\r\n")) {
		return fmt.Errorf("upstream_token: jwks_path %q must be a path starting with / (no query, fragment or spaces)", p)
	}
	return nil
}
