package jwt

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/tokengate/tokengate/introspect/claims"
)

// The fuzz targets use fixed keys (an RSA key from testdata, an Ed25519 key
// from a fixed seed) so that a saved failing input reproduces.

func jwtFuzzKeys(tb testing.TB) (*rsa.PrivateKey, ed25519.PrivateKey) {
	tb.Helper()
	data, err := os.ReadFile("testdata/jwt_fuzz_rsa_key.pem")
	if err != nil {
		tb.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		tb.Fatal("no PEM block in testdata/jwt_fuzz_rsa_key.pem")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	seed := sha256.Sum256([]byte("tokengate FuzzJWTVerify ed25519 seed"))
	return k.(*rsa.PrivateKey), ed25519.NewKeyFromSeed(seed[:])
}

func FuzzJWTVerify(f *testing.F) {
	rsaKey, edKey := jwtFuzzKeys(f)
	ks, err := NewStaticKeySet(jwtSet(f,
		jwtPublicJWK(f, rsaKey, "rsa-1", jwa.RS256),
		jwtPublicJWK(f, edKey, "ed-1", jwa.EdDSA),
	))
	if err != nil {
		f.Fatal(err)
	}
	v, err := NewVerifier(ks, Config{
		Issuer:   jwtTestIssuer,
		Audience: []string{jwtTestAudience},
		Now:      func() time.Time { return jwtTestNow },
	})
	if err != nil {
		f.Fatal(err)
	}

	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	for _, s := range []string{
		jwtSign(f, "RS256", rsaKey, jwtHeader("RS256", "rsa-1"), jwtClaims()),
		jwtSign(f, "RS256", rsaKey, jwtHeader("RS256", ""), jwtClaims()),
		jwtSign(f, "EdDSA", edKey, jwtHeader("EdDSA", "ed-1"), jwtClaims()),
		jwtSign(f, "EdDSA", edKey, jwtHeader("EdDSA", ""), jwtWith(func(c map[string]any) { c["scp"] = []string{"a"}; c["nbf"] = 1 })),
		jwtSign(f, "none", nil, jwtHeader("none", "rsa-1"), jwtClaims()),
		jwtSign(f, "HS256", pubPEM, jwtHeader("HS256", "rsa-1"), jwtClaims()),
		jwtSign(f, "PS256", rsaKey, jwtHeader("PS256", "rsa-1"), jwtClaims()),
		jwtSign(f, "RS256", rsaKey, jwtHdrWith("RS256", "rsa-1", func(h map[string]any) { h["crit"] = []string{"b64"}; h["b64"] = false }), jwtClaims()),
		jwtSign(f, "RS256", rsaKey, jwtHeader("RS256", "rsa-1"), `{"iss":"`+jwtTestIssuer+`","aud":["`+jwtTestAudience+`"],"exp":"1748779500"}`),
		"a.b.c.d.e", "..", "e30.e30.e30", `{"payload":"e30"}`, "",
	} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, token string) {
		d, err := v.Verify(context.Background(), token)
		if err != nil {
			if d != nil {
				t.Fatal("rejected with a decision")
			}
			var e *claims.Error
			if !errors.As(err, &e) || e.Code != claims.CodeInvalidToken || e.Description == "" {
				t.Fatalf("rejection %v is not an invalid_token *claims.Error with a description (a static key set is never unavailable)", err)
			}
			return
		}
		// Accepted: prove, independently of jwx, that the key signed it.
		segs := strings.Split(token, ".")
		if len(segs) != 3 {
			t.Fatalf("accepted a token with %d segments", len(segs))
		}
		hb, err := base64.RawURLEncoding.DecodeString(segs[0])
		if err != nil {
			t.Fatalf("accepted a token whose header is not base64url: %v", err)
		}
		var hdr struct {
			Alg string `json:"alg"`
		}
		if err := json.Unmarshal(hb, &hdr); err != nil {
			t.Fatalf("accepted a token whose header is not JSON: %v", err)
		}
		sig, err := base64.RawURLEncoding.DecodeString(segs[2])
		if err != nil {
			t.Fatalf("accepted a token whose signature is not base64url: %v", err)
		}
		input := []byte(segs[0] + "." + segs[1])
		switch hdr.Alg {
		case "RS256":
			sum := sha256.Sum256(input)
			if err := rsa.VerifyPKCS1v15(&rsaKey.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
				t.Fatalf("accepted an RS256 token the RSA key did not sign: %v", err)
			}
		case "EdDSA":
			if !ed25519.Verify(edKey.Public().(ed25519.PublicKey), input, sig) {
				t.Fatal("accepted an EdDSA token the Ed25519 key did not sign")
			}
		default:
			t.Fatalf("accepted alg %q", hdr.Alg)
		}
		if d.Issuer() != jwtTestIssuer || !slices.Contains(d.Audience(), jwtTestAudience) || d.Source() != "jwt" || !jwtTestNow.Before(d.ExpiresAt().Add(30*time.Second)) {
			t.Fatalf("accepted a decision that breaks the claim rules: %+v", d)
		}
	})
}

func FuzzLooksLikeJWT(f *testing.F) {
	rsaKey, edKey := jwtFuzzKeys(f)
	for _, s := range []string{
		jwtSign(f, "RS256", rsaKey, jwtHeader("RS256", "rsa-1"), jwtClaims()),
		jwtSign(f, "EdDSA", edKey, jwtHeader("EdDSA", ""), jwtClaims()),
		"eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
		"eyJhbGciOiJSUzI1NiJ9.e30.",
		"eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",
		"2YotnFZFEjr1zCsicMWpAA",
		"..", "", "a.b.c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		if !LooksLike(token) {
			return
		}
		segs := strings.Split(token, ".")
		if len(segs) != 3 || segs[0] == "" || segs[1] == "" || segs[2] == "" {
			t.Fatalf("JWT-shaped but %d segments (or an empty one)", len(segs))
		}
		for _, s := range segs[1:] {
			if strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
				t.Fatalf("JWT-shaped but segment %q is not base64url", s)
			}
		}
		hb, err := base64.RawURLEncoding.DecodeString(segs[0])
		if err != nil {
			t.Fatalf("JWT-shaped but the header does not decode: %v", err)
		}
		var hdr map[string]json.RawMessage
		if err := json.Unmarshal(hb, &hdr); err != nil {
			t.Fatalf("JWT-shaped but the header is not a JSON object: %v", err)
		}
		if _, ok := hdr["alg"]; !ok {
			t.Fatal("JWT-shaped but the header has no alg")
		}
	})
}
