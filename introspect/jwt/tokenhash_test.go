package jwt

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/introspect/claims"
)

// HashToken's Sum is the token's plain SHA-256 (the cache key, and the
// fingerprint operators compute), and its signing-input digest is that of
// the token up to its second dot.
func TestHashTokenIsSHA256OfTheTokenAndOfItsSigningInput(t *testing.T) {
	for _, tok := range []string{"", "opaque", "a.b", "hdr.payload.sig", "a.b.c.d.e", "..", strings.Repeat("x", 1000) + ".y.z"} {
		th := HashToken(tok)
		if th.Sum != sha256.Sum256([]byte(tok)) {
			t.Errorf("%q: Sum is not the token's SHA-256", tok)
		}
		if n := signingInputLen(tok); n > 0 && th.input != sha256.Sum256([]byte(tok[:n])) {
			t.Errorf("%q: the signing input's digest is wrong", tok)
		}
	}
}

// A TokenHash only ever stands for the token it was computed from: handed
// another token (an attacker's payload under a genuine token's signature),
// the verifier hashes that token itself and refuses it.
func TestVerifyHashedIgnoresTheHashOfAnotherToken(t *testing.T) {
	k := jwtKeys(t)
	v := jwtTestVerifier(t, jwtStandardSet(t), nil)
	ctx := context.Background()
	for _, alg := range []struct{ name, kid string }{{"RS256", "rsa-1"}, {"ES256", "ec-1"}} {
		var key any = k.RSA1
		if alg.name == "ES256" {
			key = k.EC1
		}
		good := jwtSign(t, alg.name, key, jwtHeader(alg.name, alg.kid), jwtClaims())
		th := HashToken(good)
		if _, err := v.VerifyHashed(ctx, good, &th); err != nil {
			t.Fatalf("%s: the good token with its own hash: %v", alg.name, err)
		}
		evil := jwtClaims()
		evil["sub"] = "user-99" // as long as "user-42": the same signing input length
		forged := jwtSign(t, alg.name, key, jwtHeader(alg.name, alg.kid), evil)
		forged = forged[:strings.LastIndexByte(forged, '.')] + good[strings.LastIndexByte(good, '.'):]
		if _, err := v.VerifyHashed(ctx, forged, &th); claims.AsError(err).Reason != "signature" {
			t.Fatalf("%s: a forged token with the good token's hash: %v, want a bad signature", alg.name, err)
		}
		// The same bytes in another string are not the token hashed either.
		copied := strings.Clone(good)
		if !th.of(good, signingInputLen(good)) || th.of(copied, signingInputLen(copied)) {
			t.Fatalf("%s: the hash is not bound to the very string hashed", alg.name)
		}
	}
}
