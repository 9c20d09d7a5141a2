package jwt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/introspect/claims"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Cold verification: every iteration does the full Verify (no decision
// cache), against the standard static key set with three keys.

func benchmarkVerify(b *testing.B, token string) {
	v := jwtTestVerifier(b, jwtStandardSet(b), nil)
	ctx := context.Background()
	if _, err := v.Verify(ctx, token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRS256(b *testing.B) {
	k := jwtKeys(b)
	benchmarkVerify(b, jwtSign(b, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims()))
}

func BenchmarkVerifyES256(b *testing.B) {
	k := jwtKeys(b)
	benchmarkVerify(b, jwtSign(b, "ES256", k.EC1, jwtHeader("ES256", "ec-1"), jwtClaims()))
}

func BenchmarkVerifyEdDSA(b *testing.B) {
	k := jwtKeys(b)
	benchmarkVerify(b, jwtSign(b, "EdDSA", k.Ed1, jwtHeader("EdDSA", "ed-1"), jwtClaims()))
}

// BenchmarkJWXVerifyRS256Only is bare jws.Verify with the same key, the
// floor our checks sit on.
func BenchmarkJWXVerifyRS256Only(b *testing.B) {
	k := jwtKeys(b)
	key := jwtPublicJWK(b, k.RSA1, "rsa-1", jwa.RS256)
	token := []byte(jwtSign(b, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jws.Verify(token, jws.WithKey(jwa.RS256, key)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLooksLikeJWT(b *testing.B) {
	k := jwtKeys(b)
	token := jwtSign(b, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims())
	b.ReportAllocs()
	for b.Loop() {
		if !LooksLike(token) {
			b.Fatal("not JWT-shaped")
		}
	}
}

// BenchmarkJWXVerifyES256Only is bare jws.Verify of an ES256 token, the
// floor of the cold path with the demo key (compare BenchmarkVerifyES256
// here and BenchmarkHandlerColdJWT in caddymodule).
func BenchmarkJWXVerifyES256Only(b *testing.B) {
	k := jwtKeys(b)
	key := jwtPublicJWK(b, k.EC1, "ec-1", jwa.ES256)
	token := []byte(jwtSign(b, "ES256", k.EC1, jwtHeader("ES256", "ec-1"), jwtClaims()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jws.Verify(token, jws.WithKey(jwa.ES256, key)); err != nil {
			b.Fatal(err)
		}
	}
}

// The standard library's floor for each algorithm: hash the signing input
// and verify the signature of the same token with an already parsed public
// key, nothing else. Compare BenchmarkVerifyRS256/ES256/EdDSA with
// BenchmarkStdlibVerifyRS256/ES256/EdDSA: the cold path's target is at most
// 1.15 times the floor (issue 12).

// benchmarkStdlib runs verify on the signing input and decoded signature
// of token.
func benchmarkStdlib(b *testing.B, token string, verify func(input, sig []byte) bool) {
	i := strings.LastIndexByte(token, '.')
	sig, err := claims.DecodeSegment(token[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	input := []byte(token[:i])
	b.ReportAllocs()
	for b.Loop() {
		if !verify(input, sig) {
			b.Fatal("bad signature")
		}
	}
}

func BenchmarkStdlibVerifyRS256(b *testing.B) {
	k := jwtKeys(b)
	pub := &k.RSA1.PublicKey
	benchmarkStdlib(b, jwtSign(b, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims()), func(input, sig []byte) bool {
		d := sha256.Sum256(input)
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) == nil
	})
}

func BenchmarkStdlibVerifyES256(b *testing.B) {
	k := jwtKeys(b)
	pub := &k.EC1.PublicKey
	benchmarkStdlib(b, jwtSign(b, "ES256", k.EC1, jwtHeader("ES256", "ec-1"), jwtClaims()), func(input, sig []byte) bool {
		d := sha256.Sum256(input)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(pub, d[:], r, s)
	})
}

func BenchmarkStdlibVerifyEdDSA(b *testing.B) {
	k := jwtKeys(b)
	pub := k.Ed1.Public().(ed25519.PublicKey)
	benchmarkStdlib(b, jwtSign(b, "EdDSA", k.Ed1, jwtHeader("EdDSA", "ed-1"), jwtClaims()), func(input, sig []byte) bool {
		return ed25519.Verify(pub, input, sig)
	})
}
