package introspect

import (
	"encoding/base64"
	"unicode/utf8"
)

// jwtB64 is the only base64 a JWS compact serialization may use: URL
// alphabet, no padding (RFC 7515 §2, §7.1), and Strict so that non-zero
// trailing bits are rejected. With one accepted encoding per byte string,
// a token has exactly one spelling: nobody can mint a "different" token
// (another cache key, another log fingerprint) from a good one.
var jwtB64 = base64.RawURLEncoding.Strict()

// jwtDecodeSegment decodes one base64url segment.
func jwtDecodeSegment(seg string) ([]byte, error) {
	return jwtB64.DecodeString(seg)
}

// jwtShorten bounds attacker-controlled text before it reaches a log line
// or an error.
func jwtShorten(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
