package jwt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// The signature check moved from jws.Verify to the standard library: these
// tests hold it to what jws.Verify accepted and refused.

// jwxSign signs claims with jwx itself, header typ at+jwt and kid k.
func jwxSign(t *testing.T, alg jwa.SignatureAlgorithm, key crypto.Signer, extra map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(jwtClaims())
	if err != nil {
		t.Fatal(err)
	}
	h := jws.NewHeaders()
	for name, v := range map[string]any{"typ": "at+jwt", "kid": "k"} {
		if err := h.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	for name, v := range extra {
		if err := h.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

func oneKeySet(t *testing.T, key crypto.Signer, alg jwa.SignatureAlgorithm) *StaticKeySet {
	t.Helper()
	ks, err := NewStaticKeySet(jwtSet(t, jwtPublicJWK(t, key, "k", alg)))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// flipSignatureBit changes one bit of the signature's first byte.
func flipSignatureBit(t *testing.T, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	sig[0] ^= 1
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

func TestStdlibSignatureCheckAgreesWithJWX(t *testing.T) {
	k := jwtKeys(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		alg jwa.SignatureAlgorithm
		key crypto.Signer
	}{
		{jwa.RS256, k.RSA1}, {jwa.RS384, k.RSA1}, {jwa.RS512, k.RSA1},
		{jwa.PS256, k.RSA1}, {jwa.PS384, k.RSA1}, {jwa.PS512, k.RSA1},
		{jwa.ES256, k.EC1}, {jwa.ES384, p384}, {jwa.ES512, p521},
		{jwa.EdDSA, k.Ed1},
	} {
		t.Run(tc.alg.String(), func(t *testing.T) {
			v := jwtTestVerifier(t, oneKeySet(t, tc.key, tc.alg), nil)
			tok := jwxSign(t, tc.alg, tc.key, nil)
			if _, err := jws.Verify([]byte(tok), jws.WithKey(tc.alg, tc.key.Public())); err != nil {
				t.Fatalf("jwx refuses its own token: %v", err)
			}
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatalf("a %s token jwx signed and verifies: %v", tc.alg, err)
			}
			bad := flipSignatureBit(t, tok)
			d, err := v.Verify(context.Background(), bad)
			jwtWantRejection(t, bad, d, err, "signature", "bad signature")
			// Another key of the same type under the same kid.
			other := jwxSign(t, tc.alg, otherKeyLike(t, tc.key), nil)
			d, err = v.Verify(context.Background(), other)
			jwtWantRejection(t, other, d, err, "signature", "bad signature")
		})
	}
}

func otherKeyLike(t *testing.T, key crypto.Signer) crypto.Signer {
	t.Helper()
	k := jwtKeys(t)
	switch key := key.(type) {
	case *rsa.PrivateKey:
		return k.RSA2
	case *ecdsa.PrivateKey:
		other, err := ecdsa.GenerateKey(key.Curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return other
	}
	return otherEd25519(t)
}

func TestStdlibSignatureCheckPSSSaltLengths(t *testing.T) {
	// RFC 7518 §3.5 wants the salt as long as the hash; jwx verified any
	// salt length (rsa.PSSSaltLengthAuto), and so does the verifier, so
	// that no token that verified before stops verifying.
	k := jwtKeys(t)
	v := jwtTestVerifier(t, oneKeySet(t, k.RSA1, jwa.PS256), nil)
	for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, 0, 10} {
		input := jwtB64JSON(t, jwtHeader("PS256", "k")) + "." + jwtB64JSON(t, jwtClaims())
		sum := sha256.Sum256([]byte(input))
		sig, err := rsa.SignPSS(rand.Reader, k.RSA1, crypto.SHA256, sum[:], &rsa.PSSOptions{SaltLength: salt})
		if err != nil {
			t.Fatal(err)
		}
		tok := input + "." + base64.RawURLEncoding.EncodeToString(sig)
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("salt length %d: %v", salt, err)
		}
	}
}

func TestStdlibSignatureCheckRefusesWrongSignatureShapes(t *testing.T) {
	k := jwtKeys(t)
	v := jwtTestVerifier(t, jwtStandardSet(t), nil)
	input := jwtB64JSON(t, jwtHeader("ES256", "ec-1")) + "." + jwtB64JSON(t, jwtClaims())
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k.EC1, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	s.FillBytes(raw[32:])
	good := input + "." + base64.RawURLEncoding.EncodeToString(raw)
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatalf("the R||S token: %v", err)
	}
	for name, sig := range map[string][]byte{
		"a DER-encoded ES256 signature":          der,
		"an ES256 signature one byte short":      raw[:63],
		"an ES256 signature with a byte added":   append(append([]byte{}, raw...), 0),
		"an ES256 signature with R zero-padded":  append([]byte{0}, raw...),
		"an ES256 signature of an ES384's size":  append(append([]byte{}, raw...), raw[:32]...),
		"an ES256 signature with r and s zeroed": make([]byte, 64),
	} {
		t.Run(name, func(t *testing.T) {
			tok := input + "." + base64.RawURLEncoding.EncodeToString(sig)
			d, err := v.Verify(context.Background(), tok)
			jwtWantRejection(t, tok, d, err, "signature", "bad signature")
		})
	}
	t.Run("an RS256 token under the kid of an EC key", func(t *testing.T) {
		tok := jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "ec-1"), jwtClaims())
		d, err := v.Verify(context.Background(), tok)
		jwtWantRejection(t, tok, d, err, "unknown_key", "unknown signing key")
	})
	t.Run("an RS256 token handed an EC key by a third-party key set", func(t *testing.T) {
		tok := jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims())
		d, err := jwtTestVerifier(t, jwtBrokenKeySet{jwtPublicJWK(t, k.EC1, "rsa-1", "")}, nil).Verify(context.Background(), tok)
		jwtWantRejection(t, tok, d, err, "alg_key_mismatch", "algorithm not allowed")
	})
	t.Run("a token signed by a key that is not in the set", func(t *testing.T) {
		tok := jwtSign(t, "EdDSA", otherEd25519(t), jwtHeader("EdDSA", "ed-1"), jwtClaims())
		d, err := v.Verify(context.Background(), tok)
		jwtWantRejection(t, tok, d, err, "signature", "bad signature")
	})
	t.Run("a third-party key set's right key verifies", func(t *testing.T) {
		tok := jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims())
		if _, err := jwtTestVerifier(t, jwtBrokenKeySet{jwtPublicJWK(t, k.RSA1, "rsa-1", jwa.RS256)}, nil).Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	})
}

func otherEd25519(t *testing.T) crypto.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func TestStdlibSignatureCheckKeepsJWXHeaderRefusals(t *testing.T) {
	// jws.Verify read the header with jwx's own reader, which refused
	// registered members of the wrong type; those tokens stay refused (as
	// bad signatures, where jws.Verify failed them), and the members are
	// never used.
	k := jwtKeys(t)
	v := jwtTestVerifier(t, jwtStandardSet(t), nil)
	attacker := otherEd25519(t)
	attackerJWK := jwtPublicJWK(t, attacker, "ed-1", jwa.EdDSA)
	for _, tc := range []struct {
		name   string
		member string
		value  any
		ok     bool
	}{
		{"cty a string", "cty", "JWT", true},
		{"x5u null", "x5u", nil, true},
		{"x5c an array of strings", "x5c", []string{"MIIB"}, true},
		{"jku a number", "jku", 5, false},
		{"x5t an object", "x5t", map[string]any{}, false},
		{"x5t#S256 true", "x5t#S256", true, false},
		{"x5c a string", "x5c", "MIIB", false},
		{"x5c an array of numbers", "x5c", []int{1}, false},
		{"jwk not a key", "jwk", map[string]any{"kty": "nope"}, false},
		{"jwk a string", "jwk", "x", false},
		{"jwk the signer's own key is ignored", "jwk", attackerJWK, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := jwtSign(t, "EdDSA", k.Ed1, jwtHdrWith("EdDSA", "ed-1", func(h map[string]any) { h[tc.member] = tc.value }), jwtClaims())
			_, jwxErr := jws.Verify([]byte(tok), jws.WithKey(jwa.EdDSA, k.Ed1.Public()))
			if (jwxErr == nil) != tc.ok {
				t.Fatalf("jws.Verify: %v; the case says ok=%v", jwxErr, tc.ok)
			}
			d, err := v.Verify(context.Background(), tok)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			jwtWantRejection(t, tok, d, err, "signature", "bad signature")
		})
	}
	t.Run("a token signed with the key in its own jwk header", func(t *testing.T) {
		tok := jwtSign(t, "EdDSA", attacker, jwtHdrWith("EdDSA", "ed-1", func(h map[string]any) { h["jwk"] = attackerJWK }), jwtClaims())
		d, err := v.Verify(context.Background(), tok)
		jwtWantRejection(t, tok, d, err, "signature", "bad signature")
	})
}
