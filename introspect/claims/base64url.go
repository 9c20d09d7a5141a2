package claims

import (
	"encoding/base64"
	"errors"
	"strings"
	"unsafe"
)

// segmentEncoding is the only base64 a JWS compact serialization may use:
// URL alphabet, no padding (RFC 7515 §2, §7.1), and Strict so that non-zero
// trailing bits are rejected. With one accepted encoding per byte string, a
// token or proof has exactly one spelling: nobody can mint a "different"
// one (another cache key, another log fingerprint, another replay-cache
// entry) from a good one.
var segmentEncoding = base64.RawURLEncoding.Strict()

var errNotBase64URL = errors.New("a character outside the base64url alphabet")

// DecodeSegment decodes one base64url segment of a JWS (an access token's,
// a DPoP proof's, or a JWK member). It is the one such decoder.
//
// Go's base64 decoders skip '\r' and '\n' even in Strict mode, so the
// alphabet is checked first: otherwise a newline inserted into a segment
// would give a second spelling of a good token that still verifies, because
// jws re-encodes what it decoded.
func DecodeSegment(seg string) ([]byte, error) {
	if skipsNewlines(seg) {
		return nil, errNotBase64URL
	}
	return segmentEncoding.DecodeString(seg)
}

// skipsNewlines reports whether seg holds a byte the decoder would skip
// rather than refuse: '\r' and '\n' are the only ones (any other byte outside
// the alphabet, '=' included, is a decoding error with no padding). Two
// vectorised searches instead of a table lookup per byte.
func skipsNewlines(seg string) bool {
	return strings.IndexByte(seg, '\n') >= 0 || strings.IndexByte(seg, '\r') >= 0
}

// AppendSegment is DecodeSegment appending to dst (a buffer the caller
// may keep on its stack), for the verifier's hot path. Same rules.
func AppendSegment(dst []byte, seg string) ([]byte, error) {
	if skipsNewlines(seg) {
		return dst, errNotBase64URL
	}
	// The decoder only reads src: aliasing the string's bytes is safe and
	// saves a copy.
	return segmentEncoding.AppendDecode(dst, unsafe.Slice(unsafe.StringData(seg), len(seg)))
}

// IsBase64URL reports whether s uses only the base64url alphabet (no
// padding, no whitespace).
func IsBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		if !base64URLAlphabet[s[i]] {
			return false
		}
	}
	return true
}

// base64URLAlphabet marks the bytes of the base64url alphabet: a table
// lookup per byte, on every token's every segment.
var base64URLAlphabet = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
	}
	return t
}()
