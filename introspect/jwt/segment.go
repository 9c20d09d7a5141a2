package jwt

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	"github.com/tokengate/tokengate/introspect/claims"
)

// segmentEncoding is the only base64 a JWS compact serialization may use:
// URL alphabet, no padding (RFC 7515 §2, §7.1), and Strict so that non-zero
// trailing bits are rejected. With one accepted encoding per byte string, a
// token has exactly one spelling: nobody can mint a "different" token
// (another cache key, another log fingerprint) from a good one.
var segmentEncoding = base64.RawURLEncoding.Strict()

// decodeSegment decodes one base64url segment. It is the one segment
// decoder: the verifier, LooksLike and the unverified readers below all use
// it.
//
// Go's base64 decoders skip '\r' and '\n' even in Strict mode, so the
// alphabet is checked first: otherwise a newline inserted into a segment
// would give a second spelling of a good token (another cache key, another
// fingerprint) that still verifies, because jws re-encodes what it decoded.
func decodeSegment(seg string) ([]byte, error) {
	if !isB64URL(seg) {
		return nil, errNotB64URL
	}
	return segmentEncoding.DecodeString(seg)
}

var errNotB64URL = errors.New("a character outside the base64url alphabet")

// LooksLike reports whether token is structurally a JWS compact
// serialization: exactly three non-empty base64url segments whose first
// decodes to a JSON object with an "alg" member. It routes hybrid mode
// (JWT-shaped tokens are verified locally, others introspected); a JWE has
// five segments and is not JWT-shaped here. It verifies nothing.
func LooksLike(token string) bool {
	h, rest, ok := strings.Cut(token, ".")
	if !ok || h == "" || len(h) > defaultMaxTokenBytes {
		return false
	}
	p, sig, ok := strings.Cut(rest, ".")
	if !ok || p == "" || sig == "" || strings.IndexByte(sig, '.') >= 0 {
		return false
	}
	if !isB64URL(p) || !isB64URL(sig) {
		return false
	}
	hdr, err := decodeSegment(h)
	if err != nil {
		return false
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(hdr, &obj) != nil {
		return false
	}
	_, ok = obj["alg"]
	return ok
}

func isB64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// UnverifiedHeader reads the JOSE header of a JWS compact serialization
// without verifying anything: for routing and for explaining a token, never
// for trusting it. It decodes and parses exactly as Verify does.
func UnverifiedHeader(token string) (map[string]any, error) {
	return unverifiedSegment(token, 0)
}

// UnverifiedClaims reads the claims set of a JWS compact serialization
// without verifying anything: for routing (which issuer's token is it?) and
// for explaining a token, never for trusting it. It decodes and parses
// exactly as Verify does.
func UnverifiedClaims(token string) (map[string]any, error) {
	return unverifiedSegment(token, 1)
}

var errNotJWS = errors.New("not a JWS compact serialization (three dot-separated parts)")

func unverifiedSegment(token string, i int) (map[string]any, error) {
	segs := strings.Split(token, ".")
	if len(segs) != 3 {
		return nil, errNotJWS
	}
	if len(segs[i]) > defaultMaxTokenBytes {
		return nil, errors.New("segment too long")
	}
	raw, err := decodeSegment(segs[i])
	if err != nil {
		return nil, err
	}
	return claims.ParseStrictObject(raw)
}
