package introspect

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tokengate/tokengate/cache"
	"github.com/tokengate/tokengate/introspect/claims"
)

// Issuers is the set of authorization servers one route trusts: one
// Validator per issuer — its own keys, introspection client, decision cache,
// Redis namespace, JWKS refresh gate and circuit breaker — and the rule that
// picks the one that judges a token (Route).
//
// The rule exists because keys must never be shared between issuers: a
// partner's IdP, or one tenant's realm, holds signing keys too, and a token
// it signs with iss set to our own issuer must not be checked against the
// union of everyone's keys. A JWT is therefore routed by its (unverified)
// iss to exactly one validator, whose verifier pins that same iss and
// knows only that issuer's keys.
//
// Issuers does not own its validators: whoever built them closes them (the
// Caddy glue shares them between routes and config reloads).
type Issuers struct {
	all   []*Validator
	byIss map[string]*Validator
	// opaque judges tokens that are not JWTs: the first validator with
	// introspection. Nil: none has one.
	opaque *Validator
	names  []string
	// trusted is names joined once, for the refusal's operator hint: the
	// refusal path is an anonymous caller's to trigger.
	trusted string
	// sameKeys: every validator keys its cache with the same secret, so a
	// token's key is computed once for all of them.
	sameKeys bool
}

// NewIssuers routes between validators, the route's own issuer first. With
// one validator it is a pass-through: the validator's own rules (PathOf)
// decide everything, exactly as without Issuers. With several, each must
// have a distinct, non-empty Issuer: that is what a JWT is routed by.
func NewIssuers(validators ...*Validator) (*Issuers, error) {
	if len(validators) == 0 {
		return nil, errors.New("no validator to route to")
	}
	is := &Issuers{all: validators, byIss: make(map[string]*Validator, len(validators))}
	for i, v := range validators {
		if v == nil {
			return nil, fmt.Errorf("validator %d is nil", i)
		}
		iss := v.cfg.Issuer
		if len(validators) > 1 && iss == "" {
			return nil, fmt.Errorf("validator %d has no issuer: with several issuers a token is routed by its iss", i)
		}
		if _, dup := is.byIss[iss]; dup {
			return nil, fmt.Errorf("issuer %s is trusted twice", iss)
		}
		is.byIss[iss] = v
		is.names = append(is.names, iss)
		if is.opaque == nil && v.introspector != nil {
			is.opaque = v
		}
	}
	is.trusted = strings.Join(is.names, ", ")
	is.sameKeys = true
	for _, v := range validators {
		if v.cfg.Cache.KeySecret != validators[0].cfg.Cache.KeySecret {
			is.sameKeys = false
		}
	}
	return is, nil
}

// Validators are the issuers' validators, the route's own first.
func (is *Issuers) Validators() []*Validator { return is.all }

// Route picks the validator that judges token, or refuses it with an
// invalid_token *Error before any network call:
//
//   - one issuer: its validator, always;
//   - a JWT-shaped token: the validator whose Issuer is exactly the
//     token's iss (compared as RFC 8414 §3 and RFC 9068 §4 compare it:
//     byte for byte, trailing slash included); any other iss, or none, is
//     "issuer not trusted";
//   - any other token (opaque, or an encrypted JWT): the first issuer that
//     has introspection; none has: "not a JWT access token", as a route
//     with only jwt answers.
//
// iss is read without verifying anything: it only chooses whose keys and
// whose introspection endpoint are asked. The chosen verifier then requires
// that very iss and a signature by that issuer's key, so a token that names
// one issuer and is signed by another fails there.
func (is *Issuers) Route(token string) (*Validator, *Error) {
	if len(is.all) == 1 {
		return is.all[0], nil
	}
	if LooksLikeJWT(token) {
		iss := unverifiedIssuer(token)
		if v, ok := is.byIss[iss]; ok && iss != "" {
			return v, nil
		}
		e := InvalidToken("issuer_not_trusted", "issuer not trusted", nil)
		e.Hint = fmt.Sprintf("token iss %q is none of the issuers this route trusts (%s, compared exactly); add a trust block for it or get the token from one of them", claims.Shorten(iss), is.trusted)
		return nil, e
	}
	if is.opaque == nil {
		e := InvalidToken("malformed", "the token is not a JWT access token", nil)
		e.Hint = "no issuer of this route has introspect, so opaque tokens cannot be checked"
		return nil, e
	}
	return is.opaque, nil
}

// Validate routes token (Route) and validates it with the chosen
// validator. v is that validator (nil when routing refused the token); the
// key is its cache key, or the route's own issuer's when routing refused,
// so that the log still has a fingerprint.
//
// With several issuers, a JWT whose decision one of them has cached is
// answered from that cache without reading its iss (cachedJWT).
func (is *Issuers) Validate(ctx context.Context, token string) (d *Decision, key cache.Key, v *Validator, err error) {
	if len(is.all) == 1 {
		v = is.all[0]
		d, key, err = v.Validate(ctx, token)
		return d, key, v, err
	}
	key, v, vd := is.cachedJWT(token)
	if v != nil {
		v.cache.CountHit()
		d, key, err = v.fromCache(ctx, token, key, vd)
		return d, key, v, err
	}
	v, rerr := is.Route(token)
	if rerr != nil {
		if !is.sameKeys {
			key = is.all[0].Key(token)
		}
		return nil, key, nil, rerr
	}
	if !is.sameKeys {
		key = v.Key(token)
	}
	d, key, err = v.validateKey(ctx, token, key)
	return d, key, v, err
}

// cachedJWT looks for a JWT's decision in the issuers' memory caches,
// which is cheaper than reading its iss to route it (base64 and JSON, on
// every request). It returns the validator whose cache holds the
// decision, with the verdict, only when that decision proves that Route
// would have chosen this very validator: it was made by the validator's
// own JWT verification, which requires the token's iss to be exactly the
// validator's issuer, and reads the iss with the same decoder and strict
// parser as Route (no duplicate members). So the token's own iss is that
// issuer, and Route maps it to this validator and no other (a token the
// verifier accepted is a three-segment JWS whose header is a JSON object
// with alg: it is JWT-shaped, LooksLikeJWT, which is not asked here because
// it parses the header). Anything else — a refusal, an introspection answer
// (which says nothing about a JWT's iss; the validator may also serve a
// single-issuer route that introspects every token), an opaque token — goes
// through Route as before. v is nil then; key is the token's key when all
// validators share it.
func (is *Issuers) cachedJWT(token string) (key cache.Key, v *Validator, vd *Verdict) {
	for i, c := range is.all {
		if i == 0 || !is.sameKeys {
			key = c.Key(token)
		}
		vd, ok := c.cache.Lookup(key)
		if ok && vd.Decision != nil && vd.Decision.Source() == "jwt" && vd.Decision.Issuer() == c.cfg.Issuer &&
			c.localJWT != nil && is.byIss[c.cfg.Issuer] == c {
			return key, c, vd
		}
	}
	if !is.sameKeys {
		key = cache.Key{}
	}
	return key, nil, nil
}

// Issuer is the issuer the validator was configured with: the name of its
// metrics and log lines ("" when only an endpoint is configured).
func (v *Validator) Issuer() string { return v.cfg.Issuer }
