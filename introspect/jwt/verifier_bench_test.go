package jwt

import (
	"context"
	"testing"

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
