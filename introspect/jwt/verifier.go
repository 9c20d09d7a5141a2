// Package jwt verifies JWT access tokens locally (RFC 9068, following the
// JWT BCP, RFC 8725) against the authorization server's keys, and keeps
// those keys: a fixed set from a file (StaticKeySet) or a JWKS URL that
// refreshes itself, rate-limited, when a token names a key it does not know
// (RemoteKeySet). Claims are read with package claims' strict readers, the
// same ones introspection responses are read with.
package jwt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/tokengate/tokengate/introspect/claims"
)

// Defaults of Config.
const (
	defaultLeeway        = 30 * time.Second
	defaultMaxTokenBytes = 8 << 10
)

// defaultTypes are the access-token types RFC 9068 §4 requires a
// resource server to insist on. Both spellings normalise to the same value.
var defaultTypes = []string{"at+jwt", "application/at+jwt"}

// AcceptedTypes is the RFC 9068 default (at+jwt) plus what the operator
// names: extra values are accepted besides the standard type, never instead.
func AcceptedTypes(extra []string) []string {
	if len(extra) == 0 {
		return nil // the verifier's default: at+jwt, application/at+jwt
	}
	return append(slices.Clone(defaultTypes), extra...)
}

// Config configures a Verifier.
type Config struct {
	// Issuer is the exact iss the tokens must carry (RFC 9068 §4, RFC 8725
	// §3.8). Required.
	Issuer string
	// Audience lists this API's identifiers; a token's aud must contain at
	// least one (RFC 9068 §4, RFC 8725 §3.9). Required: without it any
	// token the AS issues for any API would be accepted here.
	Audience []string
	// Algorithms is the allowlist of signature algorithms, checked before
	// any key lookup (RFC 8725 §3.1). Only RS256/384/512, PS256/384/512,
	// ES256/384/512 and EdDSA may be listed; "none" and HS* are refused at
	// configuration time.
	//
	// Default (empty): the algorithm each key declares — its "alg", or for
	// a key without one RS256 (RSA), ES256/ES384/ES512 (by curve), EdDSA
	// (Ed25519) — checked against the key the token selects. This is
	// KeySet.Algorithms() evaluated per key, so a key rotation that brings
	// a new algorithm is picked up with the new keys. List PS256 (say)
	// explicitly for an AS whose JWKS omits "alg" on PSS keys.
	Algorithms []jwa.SignatureAlgorithm
	// Types lists the accepted "typ" header values. Default: at+jwt and
	// application/at+jwt (RFC 9068 §2.1, §4). Compared case-insensitively,
	// with "application/" implied when a value has no "/" (RFC 7515
	// §4.1.9), so "JWT" also accepts "application/jwt". An empty string in
	// the list means "no typ header": add it (and, say, "JWT") for an AS
	// that does not type its access tokens, knowing that this weakens the
	// defence against cross-JWT confusion (an ID token presented as an
	// access token, RFC 8725 §3.11, RFC 9068 §5).
	Types []string
	// Leeway is the clock skew allowed on exp, nbf and iat. Default: 30s.
	Leeway time.Duration
	// MaxTokenBytes bounds the token; a longer one is rejected before any
	// decoding. Default: 8 KiB.
	MaxTokenBytes int
	// Now is the clock; tests inject one. Default: time.Now.
	Now func() time.Time
}

// Verifier verifies JWT access tokens (RFC 9068) locally against a
// KeySet, following the JWT BCP (RFC 8725). It is safe for concurrent use.
type Verifier struct {
	keys     KeySet
	issuer   string
	audience []string
	algs     []jwa.SignatureAlgorithm // nil: per-key default, see Config.Algorithms
	types    []string                 // normalised; "" means no typ header
	leeway   time.Duration
	maxBytes int
	now      func() time.Time
	// rules are RFC 9068's claim rules with this verifier's issuer,
	// audience and leeway.
	rules *claims.JWTRules
	// headers are the headers already read (see headerMemo).
	headers *headerMemo
}

// NewVerifier checks cfg and applies its defaults.
func NewVerifier(keys KeySet, cfg Config) (*Verifier, error) {
	if keys == nil {
		return nil, errors.New("introspect: jwt: a key set is required")
	}
	if cfg.Issuer == "" {
		return nil, errors.New("introspect: jwt: issuer is required (RFC 9068 §4: the iss claim must be checked)")
	}
	if len(cfg.Audience) == 0 || slices.Contains(cfg.Audience, "") {
		return nil, errors.New("introspect: jwt: audience is required and may not contain empty values (RFC 9068 §4: the aud claim must name this API)")
	}
	for _, alg := range cfg.Algorithms {
		if err := CheckAlgorithm(alg); err != nil {
			return nil, fmt.Errorf("introspect: jwt: %w", err)
		}
	}
	if cfg.Leeway < 0 || cfg.MaxTokenBytes < 0 {
		return nil, errors.New("introspect: jwt: leeway and max token size must not be negative")
	}
	v := &Verifier{
		keys:     keys,
		issuer:   cfg.Issuer,
		audience: slices.Clone(cfg.Audience),
		leeway:   cfg.Leeway,
		maxBytes: cfg.MaxTokenBytes,
		now:      cfg.Now,
	}
	if len(cfg.Algorithms) > 0 {
		v.algs = slices.Clone(cfg.Algorithms)
	}
	types := cfg.Types
	if len(types) == 0 {
		types = defaultTypes
	}
	for _, t := range types {
		if n := normalizeType(t); !slices.Contains(v.types, n) {
			v.types = append(v.types, n)
		}
	}
	if v.leeway == 0 {
		v.leeway = defaultLeeway
	}
	if v.maxBytes == 0 {
		v.maxBytes = defaultMaxTokenBytes
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.headers = newHeaderMemo()
	v.rules = &claims.JWTRules{Issuer: v.issuer, Audience: v.audience, Leeway: v.leeway,
		Interned: claims.NewInterned(v.issuer, v.audience)}
	return v, nil
}

// CheckAlgorithm refuses algorithms that must never verify an
// access token, with an explanation the operator can act on.
func CheckAlgorithm(alg jwa.SignatureAlgorithm) error {
	switch {
	case strings.EqualFold(string(alg), string(jwa.NoSignature)):
		return errors.New(`algorithm "none" is never accepted: unsigned tokens prove nothing (RFC 8725 §3.1, RFC 9068 §4)`)
	case strings.HasPrefix(strings.ToUpper(string(alg)), "HS"):
		return fmt.Errorf("algorithm %q is never accepted: HMAC would mean sharing the AS's signing secret with every resource server, and is the vector of algorithm-confusion attacks (RFC 8725 §2.1, §3.1); use the AS's asymmetric keys", alg)
	case !isSupportedAlg(alg):
		return fmt.Errorf("algorithm %q is not supported (want one of RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA)", alg)
	}
	return nil
}

// normalizeType lower-cases a typ value and makes "application/"
// explicit (RFC 7515 §4.1.9), so "at+jwt" and "application/AT+JWT" compare
// equal. "" (no typ header) stays "".
func normalizeType(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	if t != "" && !strings.Contains(t, "/") {
		t = "application/" + t
	}
	return t
}

// payloadBuffers holds decoding buffers for JWT payloads; one that grew
// past maxPooledPayload (a huge token) is left to the garbage collector.
var payloadBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooledPayload = 8 << 10

// parsedHeader is what the verifier takes from the JOSE header.
type parsedHeader struct {
	alg jwa.SignatureAlgorithm
	kid string
	// jwxErr is why jws.Verify, which the signature check used before,
	// would have refused the header (a registered member of the wrong
	// type); it fails the signature check as it did then. jwk is the raw
	// jwk member, parsed only then for the same reason.
	jwxErr error
	jwk    []byte
}

// Verify checks token and returns its Decision, or an *claims.Error: an
// invalid_token rejection whose Description names the failed check, or
// temporarily_unavailable when the keys could not be obtained at all.
//
// The Decision has Source "jwt"; ClientID is client_id, else azp; Scopes
// come from scope (space-separated), else scp (array or string). Claims
// holds every claim as encoding/json would decode it, except that JSON numbers
// are json.Number rather than float64, so that large integer claims (ids)
// keep their exact value; use Int64/Float64/String on them.
//
// Order: size; structure; header (alg allowlist, crit, b64, typ); claims
// (iss, aud, exp, nbf, iat); key lookup by kid; signature. The claim checks
// are cheap and come before the key lookup so that expired tokens or tokens
// for another issuer or API never trigger a JWKS refresh. Nothing is
// returned as a Decision unless the signature verified.
func (v *Verifier) Verify(ctx context.Context, token string) (*claims.Decision, error) {
	if len(token) > v.maxBytes {
		return nil, claims.InvalidToken("size", fmt.Sprintf("malformed token: longer than %d bytes", v.maxBytes), nil)
	}
	switch strings.Count(token, ".") {
	case 2:
	case 4:
		return nil, claims.InvalidToken("jwe", "malformed token: encrypted JWTs (JWE) are not supported", nil)
	default:
		return nil, claims.InvalidToken("malformed", "malformed token: not a JWS compact serialization (three dot-separated parts)", nil)
	}
	dot1 := strings.IndexByte(token, '.')
	dot2 := dot1 + 1 + strings.IndexByte(token[dot1+1:], '.')
	headerSeg, payloadSeg, sigSeg := token[:dot1], token[dot1+1:dot2], token[dot2+1:]

	hdr, known := v.headers.get(headerSeg)
	if !known {
		var err error
		if hdr, err = v.parseHeader(headerSeg); err != nil {
			return nil, err
		}
		v.headers.put(headerSeg, hdr)
	}

	if payloadSeg == "" || sigSeg == "" {
		return nil, claims.InvalidToken("malformed", "malformed token: empty payload or signature", nil)
	}
	// The payload is decoded into a pooled buffer: the Decision copies
	// what it keeps, so nothing refers to the buffer once it is built, and
	// a gateway under a stream of new tokens makes that much less garbage.
	pb := payloadBuffers.Get().(*[]byte)
	payload, err := claims.AppendSegment((*pb)[:0], payloadSeg)
	if err != nil {
		payloadBuffers.Put(pb)
		return nil, claims.InvalidToken("malformed", "malformed token: payload is not base64url", err)
	}
	var sigBuf [512]byte // RSA-4096 fits
	sig, err := claims.AppendSegment(sigBuf[:0], sigSeg)
	if err != nil {
		payloadBuffers.Put(pb)
		return nil, claims.InvalidToken("malformed", "malformed token: signature is not base64url", err)
	}
	d, err := v.rules.Decision(payload, v.now())
	if cap(payload) <= maxPooledPayload {
		*pb = payload
		payloadBuffers.Put(pb)
	}
	if err != nil {
		return nil, err
	}

	pub, err := v.lookupKey(ctx, hdr)
	if err != nil {
		return nil, err
	}

	// The signing input is the token as sent, up to its second dot (RFC
	// 7515 §5.2): the segments were checked to be strict base64url, which
	// has one spelling per byte string, so this is what jws re-encoded
	// before. Keys come from the key set only: jku/x5u/jwk/x5c in the
	// header are ignored (RFC 8725 §3.10).
	if hdr.jwxErr == nil && hdr.jwk != nil {
		hdr.jwxErr = jwxHeaderError("jwk", hdr.jwk)
	}
	if hdr.jwxErr != nil {
		return nil, claims.InvalidToken("signature", "bad signature", hdr.jwxErr)
	}
	if err := verifySignature(hdr.alg, pub, unsafeBytes(token[:dot2]), sig); err != nil {
		return nil, claims.InvalidToken("signature", "bad signature", err)
	}
	return d, nil
}

// lookupKey finds the key for hdr and checks that it may verify hdr.alg,
// returning its standard-library form.
func (v *Verifier) lookupKey(ctx context.Context, hdr parsedHeader) (any, error) {
	var vk *verifyKey
	var key jwk.Key
	var err error
	prepared, isPrepared := v.keys.(preparedKeySet)
	if isPrepared {
		vk, err = prepared.verifyKey(ctx, hdr.kid, hdr.alg)
	} else {
		key, err = v.keys.Key(ctx, hdr.kid, hdr.alg)
	}
	switch {
	case errors.Is(err, ErrUnknownKey):
		e := claims.InvalidToken("unknown_key", "unknown signing key", err)
		e.Hint = fmt.Sprintf("no key in the key set has kid %q and fits alg %s; if the AS rotated keys, the JWKS refresh will pick the new key up", claims.Shorten(hdr.kid), hdr.alg)
		return nil, e
	case errors.Is(err, ErrAmbiguousKey):
		e := claims.InvalidToken("ambiguous_key", "unknown signing key: several keys fit and the token does not say which", err)
		e.Hint = fmt.Sprintf("more than one key fits kid %q and alg %s; the AS should give every key its own kid and put it in the token header", claims.Shorten(hdr.kid), hdr.alg)
		return nil, e
	case err != nil:
		return nil, claims.Unavailable("jwks_unavailable", "the signing keys could not be loaded: check jwks_url/jwks_file and that the AS is reachable", err)
	case isPrepared && vk == nil, !isPrepared && key == nil:
		return nil, claims.Unavailable("jwks_unavailable", "the key set returned no key and no error", nil)
	}
	if isPrepared {
		// This package's sets ran keyUsable, keyFits and declaredAlg on
		// every key when they loaded it (verifyKey); these are their
		// answers.
		if !vk.fits(hdr.alg) {
			return nil, claims.InvalidToken("alg_key_mismatch", "algorithm not allowed: the signing key cannot be used with the token's alg", nil)
		}
		if v.algs == nil && vk.declared != hdr.alg {
			return nil, claims.InvalidToken("alg", "algorithm not allowed", fmt.Errorf("the key is for %s, the token says %s", vk.declared, hdr.alg))
		}
		return vk.pub, nil
	}
	// Check the key again: KeySet is an interface, and the safety of the
	// whole scheme rests on key type, key alg and use matching (RFC 8725 §3.1).
	if err := keyUsable(key); err != nil || !keyFits(key, hdr.alg) {
		return nil, claims.InvalidToken("alg_key_mismatch", "algorithm not allowed: the signing key cannot be used with the token's alg", err)
	}
	if v.algs == nil && declaredAlg(key) != hdr.alg {
		return nil, claims.InvalidToken("alg", "algorithm not allowed", fmt.Errorf("the key is for %s, the token says %s", declaredAlg(key), hdr.alg))
	}
	pub, err := rawPublicKey(key)
	if err != nil {
		return nil, claims.InvalidToken("signature", "bad signature", err)
	}
	return pub, nil
}

// unsafeBytes aliases s; the callee only reads it (it is hashed).
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// rawHeader holds the raw JSON values of the header members the verifier
// reads; nil means absent.
type rawHeader struct {
	alg, typ, kid, b64 []byte
	crit               bool
}

// KnownHeader reports whether token's header is one this verifier has
// already read and accepted: such a token is JWT-shaped (LooksLike) without
// decoding its header again.
func (v *Verifier) KnownHeader(token string) bool {
	// LooksLike's segment rule still applies: the memo answers for the
	// header's contents only. The alphabet of the payload and signature is
	// left to Verify, whose strict decoder refuses what LooksLike would
	// have (scanning a kilobyte for it here would cost the cold path more
	// than the memo saves): such a token is refused as malformed either way.
	seg, _, _, ok := jwsSegments(token)
	if !ok {
		return false
	}
	_, known := v.headers.get(seg)
	return known
}

// parseHeader applies the header rules. Every check here runs before a key
// is looked up.
func (v *Verifier) parseHeader(seg string) (parsedHeader, error) {
	var h parsedHeader
	if seg == "" {
		return h, claims.InvalidToken("malformed", "malformed token: empty header", nil)
	}
	raw, err := decodeSegment(seg)
	if err != nil {
		return h, claims.InvalidToken("malformed", "malformed token: header is not base64url", err)
	}
	var r rawHeader
	err = claims.ScanObject(raw, func(name, value []byte) error {
		switch string(name) {
		case "alg":
			r.alg = value
		case "typ":
			r.typ = value
		case "kid":
			r.kid = value
		case "b64":
			r.b64 = value
		case "crit":
			r.crit = true
		case "jwk":
			h.jwk = value
		case "cty", "jku", "x5u", "x5t", "x5t#S256", "x5c":
			if err := jwxHeaderError(string(name), value); err != nil && h.jwxErr == nil {
				h.jwxErr = err
			}
		}
		return nil
	})
	if err != nil {
		return h, claims.InvalidToken("malformed", "malformed token: header is not a valid JSON object", err)
	}

	switch {
	case r.alg == nil:
		return h, claims.InvalidToken("alg_missing", "malformed token: missing alg header", nil)
	case r.alg[0] != '"':
		return h, claims.InvalidToken("malformed", "malformed token: alg header must be a string", notString("alg", r.alg))
	}
	alg, known := knownAlg(r.alg)
	if !known {
		s, err := claims.StringValue(r.alg)
		if err != nil {
			return h, claims.InvalidToken("malformed", "malformed token: alg header must be a string", err)
		}
		alg = jwa.SignatureAlgorithm(s)
	}
	switch {
	case alg == "":
		return h, claims.InvalidToken("alg_missing", "malformed token: missing alg header", nil)
	case strings.EqualFold(string(alg), string(jwa.NoSignature)):
		// RFC 8725 §3.1, RFC 9068 §4: "MUST reject any JWT in which the
		// value of alg is none". Case variants too.
		return h, claims.InvalidToken("alg_none", "algorithm not allowed: unsigned tokens (alg none) are never accepted", nil)
	}
	h.alg = alg
	if v.algs != nil {
		if !slices.Contains(v.algs, h.alg) {
			return h, claims.InvalidToken("alg", "algorithm not allowed", fmt.Errorf("alg %q is not in the allowlist", claims.Shorten(string(alg))))
		}
	} else if !isSupportedAlg(h.alg) {
		// HS* lands here: never a candidate, whatever the keys.
		return h, claims.InvalidToken("alg", "algorithm not allowed", fmt.Errorf("alg %q is not an accepted asymmetric algorithm", claims.Shorten(string(alg))))
	}

	// RFC 7515 §4.1.11: a recipient MUST reject a JWS with crit members it
	// does not understand. We understand none, so any crit is rejected.
	if r.crit {
		return h, claims.InvalidToken("crit", "unsupported critical header", nil)
	}
	// RFC 7797: b64:false signs the payload unencoded; it is only valid
	// with crit (rejected above) and we never want it. Anything but a
	// literal true (the default) would make jwx and us disagree on the
	// signing input.
	if r.b64 != nil && string(r.b64) != "true" {
		return h, claims.InvalidToken("b64", "unsupported critical header: b64", nil)
	}

	if r.typ != nil && r.typ[0] != '"' {
		return h, claims.InvalidToken("malformed", "malformed token: typ header must be a string", notString("typ", r.typ))
	}
	if !v.typeAccepted(r.typ) {
		typ := ""
		if r.typ != nil {
			if typ, err = claims.StringValue(r.typ); err != nil {
				return h, claims.InvalidToken("malformed", "malformed token: typ header must be a string", err)
			}
		}
		e := claims.InvalidToken("typ", "token type not accepted", nil)
		if typ == "" {
			e.Description = "token type not accepted: the token has no typ header (RFC 9068 access tokens carry typ at+jwt)"
		}
		e.Hint = fmt.Sprintf("the token's typ header is %q; RFC 9068 access tokens carry at+jwt; if this AS does not type its access tokens, list the value under jwt { typ ... } (\"\" for none)", claims.Shorten(typ))
		return h, e
	}

	if r.kid != nil {
		if r.kid[0] != '"' {
			return h, claims.InvalidToken("malformed", "malformed token: kid header must be a non-empty string", notString("kid", r.kid))
		}
		kid, err := claims.StringValue(r.kid)
		if err != nil || kid == "" {
			return h, claims.InvalidToken("malformed", "malformed token: kid header must be a non-empty string", err)
		}
		h.kid = kid
	}
	return h, nil
}

// jwxHeaderError is why jwx v2's header reader (jws.Verify, which checked
// signatures before the standard library did) refused a registered member
// the verifier does not otherwise read, or nil: cty, jku, x5u, x5t and
// x5t#S256 must be strings (or null), x5c an array of strings, jwk a key.
// They are never used (keys come from the key set only, RFC 8725 §3.10);
// this keeps refusing the tokens that were refused.
func jwxHeaderError(name string, value []byte) error {
	switch name {
	case "x5c":
		var chain []string
		if json.Unmarshal(value, &chain) == nil {
			return nil
		}
	case "jwk":
		if _, err := jwk.ParseKey(value); err != nil {
			return fmt.Errorf("the jwk header is not a key: %w", err)
		}
		return nil
	default:
		if value[0] == '"' || string(value) == "null" {
			return nil
		}
	}
	return fmt.Errorf("the %s header is %s, of the wrong type", name, claims.JSONKind(value))
}

// notString is claims.String's error for a member that is not a string.
func notString(name string, raw []byte) error {
	return fmt.Errorf("%s must be a string, not %s", name, claims.JSONKind(raw))
}

// knownAlg maps a raw JSON string without escapes to a supported
// algorithm's constant, without allocating.
func knownAlg(raw []byte) (jwa.SignatureAlgorithm, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	name := raw[1 : len(raw)-1]
	for _, a := range supportedAlgs {
		if string(name) == string(a) {
			return a, true
		}
	}
	return "", false
}

// typeAccepted reports whether the typ header with raw JSON value raw (nil:
// absent) is accepted: slices.Contains(v.types, normalizeType(typ)), without
// allocating for the ASCII values without escapes that real tokens carry.
func (v *Verifier) typeAccepted(raw []byte) bool {
	if raw == nil {
		return slices.Contains(v.types, "")
	}
	t := raw[1 : len(raw)-1]
	for _, c := range t {
		if c >= 0x80 || c == '\\' {
			typ, err := claims.StringValue(raw)
			return err == nil && slices.Contains(v.types, normalizeType(typ))
		}
	}
	// ASCII: normalizeType's TrimSpace and ToLower are ASCII too.
	t = bytes.TrimSpace(t)
	const app = "application/"
	for _, want := range v.types {
		switch {
		case len(t) == 0:
			if want == "" {
				return true
			}
		case bytes.IndexByte(t, '/') < 0:
			if len(want) == len(app)+len(t) && want[:len(app)] == app && asciiEqualLower(t, want[len(app):]) {
				return true
			}
		default:
			if asciiEqualLower(t, want) {
				return true
			}
		}
	}
	return false
}

// asciiEqualLower reports whether lower-casing ASCII b gives lower.
func asciiEqualLower(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
