package jwt

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/tokengate/tokengate/introspect/claims"
)

// decodeSegment is claims.DecodeSegment, the one segment decoder: the
// verifier, LooksLike and the unverified readers below all use it.
func decodeSegment(seg string) ([]byte, error) { return claims.DecodeSegment(seg) }

// LooksLike reports whether token is structurally a JWS compact
// serialization: exactly three non-empty base64url segments whose first
// decodes to a JSON object with an "alg" member. It routes hybrid mode
// (JWT-shaped tokens are verified locally, others introspected); a JWE has
// five segments and is not JWT-shaped here. It verifies nothing.
func LooksLike(token string) bool {
	h, p, sig, ok := jwsSegments(token)
	if !ok || !isB64URL(p) || !isB64URL(sig) {
		return false
	}
	hdr, err := decodeSegment(h)
	if err != nil {
		return false
	}
	// The strict scanner answers for every real header without
	// allocating; what it refuses (duplicates, bad UTF-8, deep nesting) is
	// judged by the lenient reader, as before, so that routing does not
	// change for hostile headers.
	hasAlg := false
	if claims.ScanObject(hdr, func(name, _ []byte) error {
		hasAlg = hasAlg || string(name) == "alg"
		return nil
	}) == nil {
		return hasAlg
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(hdr, &obj) != nil {
		return false
	}
	_, ok = obj["alg"]
	return ok
}

// jwsSegments splits a JWS compact serialization: exactly three non-empty
// segments, the header no longer than a token may be.
func jwsSegments(token string) (header, payload, sig string, ok bool) {
	h, rest, ok := strings.Cut(token, ".")
	if !ok || h == "" || len(h) > defaultMaxTokenBytes {
		return "", "", "", false
	}
	p, s, ok := strings.Cut(rest, ".")
	if !ok || p == "" || s == "" || strings.IndexByte(s, '.') >= 0 {
		return "", "", "", false
	}
	return h, p, s, true
}

func isB64URL(s string) bool { return claims.IsBase64URL(s) }

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
