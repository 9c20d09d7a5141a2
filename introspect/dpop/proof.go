// Package dpop verifies DPoP proofs (RFC 9449) at a resource server: the
// proof JWT's header, signature and claims (§4.3), and single use of its
// jti (§11.1) through a replay cache that can be shared by a fleet. It does
// not know about HTTP servers: the caller says which method and URI the
// request had, and which token it carried.
package dpop

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unsafe"

	"github.com/tokengate/tokengate/introspect/claims"
)

// CodeInvalidProof is RFC 9449 §7.1's error code for a request whose
// proof is missing or fails a check; it is sent with 401 and the DPoP
// challenge.
const CodeInvalidProof claims.Code = "invalid_dpop_proof"

// DefaultWindow is how far a proof's iat may be from the gateway's clock,
// either way. RFC 9449 §4.3 check 11 leaves it to the server ("within an
// acceptable window"); §11.1 notes that the window bounds how long jti
// values must be remembered.
const DefaultWindow = 60 * time.Second

// MaxProofLength bounds the DPoP header: a proof with an RSA-8192 key is
// under 4 KiB.
const MaxProofLength = 8192

// Verifier checks proofs. The zero value is not usable; fill Algorithms
// (nil: DefaultAlgorithms), Window, Now and Replay.
type Verifier struct {
	// Algorithms accepted; nil means DefaultAlgorithms.
	Algorithms []string
	// Window is the accepted distance between iat and now, past and
	// future. 0 means DefaultWindow.
	Window time.Duration
	// Replay remembers jti values; nil means no replay protection.
	Replay ReplayCache
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Nonces, if set, makes the nonce claim required and checked (RFC
	// 9449 §9, §4.3 check 10). Nil: no server nonces (the default).
	Nonces *Nonces

	allowed map[string]*algorithm
	keys    *keyCache
}

// Init checks the configuration and prepares the verifier.
func (v *Verifier) Init() error {
	names := v.Algorithms
	if len(names) == 0 {
		names = DefaultAlgorithms
	}
	v.allowed = make(map[string]*algorithm, len(names))
	for _, n := range names {
		a, ok := algorithms[n]
		if !ok {
			return errors.New("dpop: algorithm " + n + " is not supported (asymmetric JWS algorithms only)")
		}
		v.allowed[n] = a
	}
	if v.Window <= 0 {
		v.Window = DefaultWindow
	}
	v.keys = new(keyCache)
	if v.Now == nil {
		v.Now = time.Now
	}
	return nil
}

// AllowedAlgorithms lists the accepted algorithms in the order of
// Algorithms, for the challenge's algs parameter (§7.1) and the resource
// metadata (RFC 9728 dpop_signing_alg_values_supported).
func (v *Verifier) AllowedAlgorithms() []string {
	if len(v.Algorithms) == 0 {
		return DefaultAlgorithms
	}
	return v.Algorithms
}

// Request is what the proof is checked against.
type Request struct {
	// Method is the request method (htm).
	Method string
	// URI is the request's absolute URI as the client addressed it:
	// scheme, host and path; a query or fragment is ignored (htu, §4.3
	// check 9).
	URI string
	// AccessToken is the token the request carries (ath, §4.3 check 12).
	AccessToken string
}

// Proof is a verified proof.
type Proof struct {
	// Thumbprint is the RFC 7638 SHA-256 thumbprint of the proof's key,
	// to compare with the token's cnf.jkt (§6.1).
	Thumbprint string
	// ID is the jti.
	ID string
	// IssuedAt is the iat.
	IssuedAt time.Time
}

func invalid(reason, description string) *claims.Error {
	return &claims.Error{Code: CodeInvalidProof, Reason: reason, Description: description}
}

// Verify runs the checks of RFC 9449 §4.3 on proof, except the jti's
// single use (Consume), which the caller runs last, once the token and its
// binding are good: a request refused for another reason does not use up
// the proof. Errors are *claims.Error with CodeInvalidProof.
func (v *Verifier) Verify(proof string, req Request) (*Proof, error) {
	// Check 2: "a single, well-formed JWT".
	if proof == "" {
		return nil, invalid("dpop_missing", "the DPoP scheme requires a DPoP proof header")
	}
	if len(proof) > MaxProofLength {
		return nil, invalid("dpop_too_long", "the DPoP proof is too long")
	}
	h64, rest, ok1 := strings.Cut(proof, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s64, '.') >= 0 {
		return nil, invalid("dpop_malformed", "the DPoP proof is not a JWS compact serialization")
	}
	hb, err1 := b64(h64)
	pb, err2 := b64(p64)
	sig, err3 := b64(s64)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, invalid("dpop_malformed", "the DPoP proof is not base64url")
	}
	// Duplicate members are refused: two readers of one proof must never
	// see different values (the strict reader is the project's one).
	hdr, err := claims.ParseStrictObject(hb)
	if err != nil {
		return nil, invalid("dpop_malformed", "the DPoP proof header is not a JSON object")
	}
	// Check 4: typ is dpop+jwt. Compared exactly, as §4.2 registers it
	// (a JWT access token or an ID token must never pass as a proof).
	if typ, _ := hdr["typ"].(string); typ != "dpop+jwt" {
		return nil, invalid("dpop_typ", "the DPoP proof's typ is not dpop+jwt")
	}
	// Check 5: an asymmetric algorithm on the allowlist; never none, never
	// HS*.
	algName, _ := hdr["alg"].(string)
	alg, ok := v.allowed[algName]
	if !ok {
		return nil, invalid("dpop_alg", "the DPoP proof's alg is not accepted")
	}
	if _, crit := hdr["crit"]; crit {
		// RFC 7515 §4.1.11: extensions we do not understand must fail.
		return nil, invalid("dpop_crit", "the DPoP proof has critical header parameters")
	}
	// Check 7: a public key, and only a public key.
	jwk, err := readJWK(hdr["jwk"])
	if errors.Is(err, errPrivateKey) {
		return nil, invalid("dpop_private_key", "the DPoP proof's jwk contains a private key")
	}
	if err != nil {
		return nil, invalid("dpop_jwk", "the DPoP proof has no usable jwk for its alg")
	}
	pk, cached := v.keys.get(alg, jwk)
	if !cached {
		pub, err := jwk.key(alg)
		if err != nil {
			return nil, invalid("dpop_jwk", "the DPoP proof has no usable jwk for its alg")
		}
		pk = parsedKey{pub: pub}
	}
	// Check 6: the signature, with the key in the proof itself. Before
	// the claims are believed.
	if !alg.verify(pk.pub, bytesOf(proof[:len(h64)+1+len(p64)]), sig) {
		return nil, invalid("dpop_signature", "the DPoP proof's signature does not verify")
	}
	if !cached {
		pk.thumbprint = jwk.thumbprint()
		v.keys.put(alg, jwk, pk)
	}

	body, err := claims.ParseStrictObject(pb)
	if err != nil {
		return nil, invalid("dpop_malformed", "the DPoP proof payload is not a JSON object")
	}
	// Check 3: the required claims.
	jti, _ := body["jti"].(string)
	if jti == "" || len(jti) > 256 {
		return nil, invalid("dpop_jti", "the DPoP proof has no usable jti")
	}
	// Check 8: htm, compared exactly (methods are case-sensitive, RFC
	// 9110 §9.1).
	if htm, _ := body["htm"].(string); htm != req.Method {
		return nil, invalid("dpop_htm", "the DPoP proof's htm does not match the request method")
	}
	// Check 9: htu, without query and fragment, after syntax-based
	// normalization (RFC 3986 §6.2.2, §6.2.3).
	htu, _ := body["htu"].(string)
	if !sameURI(htu, req.URI) {
		e := invalid("dpop_htu", "the DPoP proof's htu does not match the request URI")
		e.Hint = fmt.Sprintf("proof htu %q, request URI %q as the gateway sees it; behind a proxy, list it in Caddy's trusted_proxies so that X-Forwarded-Proto/Host count", claims.Shorten(htu), claims.Shorten(req.URI))
		return nil, e
	}
	// Check 11: iat within the window, either way (a proof made for later
	// would otherwise be usable for longer than its jti is remembered).
	iat, present, err := claims.NumericDate(body, "iat")
	if err != nil || !present {
		return nil, invalid("dpop_iat", "the DPoP proof has no iat")
	}
	now := v.Now()
	clock := func(e *claims.Error) *claims.Error {
		e.Hint = fmt.Sprintf("proof iat %s, now %s, window %s; if every client fails this way, check the gateway's clock", iat.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), v.Window)
		return e
	}
	if iat.Before(now.Add(-v.Window)) {
		return nil, clock(invalid("dpop_iat_stale", "the DPoP proof is too old"))
	}
	if iat.After(now.Add(v.Window)) {
		return nil, clock(invalid("dpop_iat_future", "the DPoP proof is issued in the future"))
	}
	// Check 12 (§4.3, with an access token): ath is the base64url SHA-256
	// of the token's ASCII bytes (§4.2), so that a proof cannot be paired
	// with another token.
	if req.AccessToken != "" {
		ath, _ := body["ath"].(string)
		sum := sha256.Sum256(bytesOf(req.AccessToken))
		var want [43]byte
		base64.RawURLEncoding.Encode(want[:], sum[:])
		if len(ath) != len(want) || subtle.ConstantTimeCompare([]byte(ath), want[:]) != 1 {
			return nil, invalid("dpop_ath", "the DPoP proof's ath does not match the access token")
		}
	}
	// Check 10: with server nonces on, the proof must carry a current one;
	// the answer to a missing or old one is use_dpop_nonce with a fresh
	// nonce (§9), which a client retries with.
	if v.Nonces != nil {
		if nonce, _ := body["nonce"].(string); nonce == "" || !v.Nonces.Valid(nonce) {
			return nil, &claims.Error{Code: CodeUseNonce, Reason: "dpop_nonce",
				Description: "the DPoP proof must carry the nonce given in the DPoP-Nonce header"}
		}
	}
	return &Proof{Thumbprint: pk.thumbprint, ID: jti, IssuedAt: iat}, nil
}

// Consume records the proof's jti, and fails if it was seen before within
// the window (RFC 9449 §11.1). The jti is scoped to the key: two clients
// may pick the same jti.
func (v *Verifier) Consume(ctx context.Context, p *Proof) error {
	if v.Replay == nil {
		return nil
	}
	// Remember it as long as a proof with this iat can still be accepted:
	// until iat + Window, which is at most 2 × Window from now.
	keep := p.IssuedAt.Add(v.Window).Sub(v.Now()) + time.Second
	if keep <= 0 {
		keep = time.Second
	}
	sum := sha256.Sum256([]byte(p.Thumbprint + "\x00" + p.ID))
	fresh, err := v.Replay.Once(ctx, sum, keep)
	if err != nil {
		return &claims.Error{Code: claims.CodeUnavailable, Reason: "dpop_replay_store",
			Description: "the DPoP proof could not be checked right now; try again later", Err: err,
			Hint: "the replay cache for DPoP proofs could not answer: check cache.redis and redis_timeout"}
	}
	if !fresh {
		return invalid("dpop_replay", "the DPoP proof has been used before")
	}
	return nil
}

// sameURI compares a proof's htu with the request URI, ignoring query and
// fragment, scheme and host case, and a default port.
func sameURI(htu, uri string) bool {
	a, ok1 := normalURI(htu)
	b, ok2 := normalURI(uri)
	return ok1 && ok2 && a == b
}

func normalURI(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.User != nil {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", false
	}
	host := strings.ToLower(u.Host)
	if p := u.Port(); p != "" && (scheme == "https" && p == "443" || scheme == "http" && p == "80") {
		host = strings.ToLower(u.Hostname())
		if strings.IndexByte(host, ':') >= 0 {
			host = "[" + host + "]"
		}
	}
	if host == "" {
		return "", false
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, true
}

// bytesOf views s's bytes without copying them, for hashing and signature
// checks, which read their input and never keep or change it: a copy of the
// signing input and of the token allocated on every request.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
