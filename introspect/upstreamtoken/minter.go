package upstreamtoken

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/introspect/asclient"
)

// TokenType is the typ header of every minted token (RFC 9068 §2.1), so an
// upstream that checks it cannot take an ID token for one of ours.
const TokenType = "at+jwt"

// minterIDs numbers Minters: a Reuse tells their tokens apart by it (routes
// that share cached decisions may have different upstream settings).
var minterIDs atomic.Uint64

// Minter signs upstream tokens with one key and publishes the JWKS. It is
// safe for concurrent use.
type Minter struct {
	opts    Options
	id      uint64
	key     jwk.Key
	alg     jwa.SignatureAlgorithm
	kid     string
	nextKID string
	aud     any      // a string for one audience (what most libraries expect), else the list
	copy    []string // copiedClaims, then opts.Claims, without repeats
	ttl     int64    // seconds
	jwks    []byte
	now     func() time.Time
	signed  atomic.Uint64
}

// New loads the keys and builds a Minter. It fails on anything Check
// refuses, on a key it cannot sign with, and on two keys with one kid.
func New(o Options) (*Minter, error) {
	o = o.WithDefaults()
	if err := o.Check(); err != nil {
		return nil, err
	}
	key, err := loadKey("signing_key", o.SigningKeyFile)
	if err != nil {
		return nil, err
	}
	m := &Minter{opts: o, id: minterIDs.Add(1), key: key, kid: key.KeyID(), now: o.Now,
		alg: jwa.SignatureAlgorithm(key.Algorithm().String()), ttl: int64(o.TTL / time.Second)}
	if m.now == nil {
		m.now = time.Now
	}
	keys := []jwk.Key{key}
	if o.NextSigningKeyFile != "" {
		next, err := loadKey("next_signing_key", o.NextSigningKeyFile)
		if err != nil {
			return nil, err
		}
		if next.KeyID() == m.kid {
			// Upstreams pick the key by kid: two keys with one kid would
			// make every token of one of them unverifiable.
			return nil, fmt.Errorf("upstream_token: next_signing_key has the kid %q of signing_key; is it the same key?", m.kid)
		}
		m.nextKID = next.KeyID()
		keys = append(keys, next)
	}
	if m.jwks, err = publicJWKS(keys); err != nil {
		return nil, fmt.Errorf("upstream_token: building the JWKS: %w", err)
	}
	if len(o.Audience) == 1 {
		m.aud = o.Audience[0]
	} else {
		m.aud = slices.Clone(o.Audience)
	}
	for _, c := range append(slices.Clone(copiedClaims), o.Claims...) {
		if !slices.Contains(m.copy, c) {
			m.copy = append(m.copy, c)
		}
	}
	return m, nil
}

// loadKey reads a private signing key with the same reader and parser
// (size bound, formats, checks, alg and kid rules) as the gateway's
// private_key_jwt key, naming this setting in its errors.
func loadKey(setting, path string) (jwk.Key, error) {
	k, err := asclient.ReadPrivateKeyFile(path, "")
	if err != nil {
		if kfe, ok := errors.AsType[*asclient.KeyFileError](err); ok {
			return nil, fmt.Errorf("upstream_token: %s %s: %w", setting, path, kfe.Err)
		}
		return nil, fmt.Errorf("upstream_token: %s: %w", setting, err)
	}
	return k, nil
}

// publicJWKS is the JWK Set of the public halves of keys, built from the
// raw public keys so that nothing else a key file carried (d, p, q, dp, dq,
// qi, or any private member of its own) can be published.
func publicJWKS(keys []jwk.Key) ([]byte, error) {
	set := jwk.NewSet()
	for _, k := range keys {
		var raw any
		if err := k.Raw(&raw); err != nil {
			return nil, err
		}
		var pub any
		switch p := raw.(type) {
		case *rsa.PrivateKey:
			pub = &p.PublicKey
		case *ecdsa.PrivateKey:
			pub = &p.PublicKey
		case ed25519.PrivateKey:
			pub = p.Public()
		default:
			return nil, fmt.Errorf("unsupported key type %T", raw)
		}
		pk, err := jwk.FromRaw(pub)
		if err != nil {
			return nil, err
		}
		for name, v := range map[string]any{jwk.KeyIDKey: k.KeyID(), jwk.AlgorithmKey: k.Algorithm(), jwk.KeyUsageKey: jwk.ForSignature} {
			if err := pk.Set(name, v); err != nil {
				return nil, err
			}
		}
		if err := set.AddKey(pk); err != nil {
			return nil, err
		}
	}
	return json.Marshal(set)
}

// JWKS is the public JWK Set (the signing key, then the next one), as JSON.
// The caller must not modify it.
func (m *Minter) JWKS() []byte { return m.jwks }

// JWKSPath is where the JWKS is served; "" when it is not.
func (m *Minter) JWKSPath() string { return m.opts.JWKSPath }

// Signatures counts the tokens m has signed: with reuse working, it grows
// with decisions and time, not with requests.
func (m *Minter) Signatures() uint64 { return m.signed.Load() }

// Settings describe a Minter for operators (the doctor); no key material.
type Settings struct {
	Issuer             string        `json:"issuer"`
	Audience           []string      `json:"audience"`
	TTL                time.Duration `json:"ttl"`
	Algorithm          string        `json:"alg"`
	KeyID              string        `json:"kid"`
	SigningKeyFile     string        `json:"signing_key"`
	NextKeyID          string        `json:"next_kid,omitempty"`
	NextSigningKeyFile string        `json:"next_signing_key,omitempty"`
	JWKSPath           string        `json:"jwks_path,omitempty"`
	Claims             []string      `json:"claims"`
}

// Settings reports m's settings; Claims lists every claim copied when
// present (acr, auth_time, cnf and the configured ones).
func (m *Minter) Settings() Settings {
	return Settings{Issuer: m.opts.Issuer, Audience: slices.Clone(m.opts.Audience), TTL: time.Duration(m.ttl) * time.Second,
		Algorithm: m.alg.String(), KeyID: m.kid, SigningKeyFile: m.opts.SigningKeyFile,
		NextKeyID: m.nextKID, NextSigningKeyFile: m.opts.NextSigningKeyFile, JWKSPath: m.opts.JWKSPath,
		Claims: slices.Clone(m.copy)}
}

// Token is one minted upstream token. It is shared by every request that
// reuses it and must be treated as immutable.
type Token struct {
	// JWT is the compact serialisation.
	JWT string
	// Authorization is "Bearer " + JWT, built once rather than per request.
	Authorization string
	// ID is the jti. A reused token carries the same jti on every request
	// within its life: it names the token, not a request.
	ID        string
	IssuedAt  time.Time
	ExpiresAt time.Time

	minter  uint64
	renewAt time.Time // after this, a request gets a new token
}

// Mint signs a new token for d, now.
//
// Its exp is iat + TTL, or the caller token's exp if that comes first: the
// gateway cannot vouch for the caller beyond it. A caller token already past
// its exp (accepted only within the gateway's leeway) gets invalid_token
// "token expired": an upstream token that is born expired helps no one, and
// the caller learns to refresh.
func (m *Minter) Mint(d *introspect.Decision) (*Token, error) {
	return m.mint(d, m.now())
}

func (m *Minter) mint(d *introspect.Decision, now time.Time) (*Token, error) {
	// Whole seconds, rounded down: iat is never in the upstream's future.
	iat := now.Unix()
	exp := iat + m.ttl
	capped := false
	if !d.ExpiresAt().IsZero() {
		if callerExp := d.ExpiresAt().Unix(); callerExp < exp {
			exp, capped = callerExp, true
		}
	}
	if exp <= iat {
		e := introspect.InvalidToken("expired", "token expired", nil)
		e.Hint = fmt.Sprintf("the token expired at %s and was accepted within the leeway only; an upstream token cannot outlive it", d.ExpiresAt().UTC().Format(time.RFC3339))
		return nil, e
	}
	jti, err := newJTI()
	if err != nil {
		return nil, unavailable(err)
	}
	claims := make(map[string]any, 8+len(m.copy))
	claims["iss"] = m.opts.Issuer
	claims["aud"] = m.aud
	// RFC 9068 §2.2: without a resource owner (client_credentials) sub
	// names the client: Decision.UserID is sub, else client_id.
	if sub := d.UserID(); sub != "" {
		claims["sub"] = sub
	}
	if d.ClientID() != "" {
		claims["client_id"] = d.ClientID()
	}
	if s := d.ScopeString(); s != "" {
		claims["scope"] = s
	}
	claims["iat"] = iat
	claims["exp"] = exp
	claims["jti"] = jti
	for _, name := range m.copy {
		if v, ok := d.TopClaim(name); ok && v != nil {
			claims[name] = v
		}
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return nil, unavailable(fmt.Errorf("encoding the claims: %w", err))
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, TokenType); err != nil {
		return nil, unavailable(err)
	}
	if err := hdr.Set(jws.KeyIDKey, m.kid); err != nil {
		return nil, unavailable(err)
	}
	signed, err := jws.Sign(payload, jws.WithKey(m.alg, m.key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return nil, unavailable(fmt.Errorf("signing: %w", err))
	}
	m.signed.Add(1)
	t := &Token{Authorization: "Bearer " + string(signed), ID: jti, IssuedAt: time.Unix(iat, 0), ExpiresAt: time.Unix(exp, 0), minter: m.id}
	// JWT shares Authorization's bytes: a kept token costs its size once.
	t.JWT = t.Authorization[len("Bearer "):]
	// Reuse the token while it has most of its life left: an upstream (or
	// the next hop it forwards to) then always gets at least half of the
	// TTL. A token cut short by the caller's exp is kept to its end, as a
	// new one could not live any longer.
	t.renewAt = now.Add(t.ExpiresAt.Sub(now) / 2)
	if capped {
		t.renewAt = t.ExpiresAt
	}
	return t, nil
}

// unavailable is a failure of the gateway's own (randomness, signing): never
// the caller's fault, and the request is not forwarded without its token.
func unavailable(err error) *introspect.Error {
	return &introspect.Error{Code: introspect.CodeUnavailable, Description: "the request cannot be forwarded right now; try again later",
		Reason: "upstream_token", Hint: "the gateway could not sign the upstream token", Err: err}
}

// newJTI is 128 random bits: unique per minted token.
func newJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
