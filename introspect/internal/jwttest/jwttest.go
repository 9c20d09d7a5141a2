// Package jwttest signs JWTs byte by byte for the tests of the introspect
// packages: keys generated once per test binary (RSA generation is slow),
// public JWKs and sets, and a hand-built compact JWS so that a test controls
// every byte of the header and claims.
package jwttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Keys are the test keys.
type Keys struct {
	RSA1, RSA2, RSA3 *rsa.PrivateKey
	EC1              *ecdsa.PrivateKey
	Ed1              ed25519.PrivateKey
}

var (
	keysOnce sync.Once
	keysVal  Keys
)

func NewKeys(t testing.TB) Keys {
	t.Helper()
	keysOnce.Do(func() {
		var k Keys
		var err error
		for _, p := range []**rsa.PrivateKey{&k.RSA1, &k.RSA2, &k.RSA3} {
			if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		}
		if k.EC1, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, k.Ed1, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		keysVal = k
	})
	return keysVal
}

// PublicJWK builds the public JWK of priv with the given kid and alg
// ("" leaves the member out).
func PublicJWK(t testing.TB, priv crypto.Signer, kid string, alg jwa.SignatureAlgorithm) jwk.Key {
	t.Helper()
	k, err := jwk.FromRaw(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	if kid != "" {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	if alg != "" {
		if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Set(jwk.KeyUsageKey, "sig"); err != nil {
		t.Fatal(err)
	}
	return k
}

func Set(t testing.TB, keys ...jwk.Key) jwk.Set {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	return set
}

func Header(alg, kid string) map[string]any {
	h := map[string]any{"alg": alg, "typ": "at+jwt"}
	if kid != "" {
		h["kid"] = kid
	}
	return h
}

func B64JSON(t testing.TB, v any) string {
	t.Helper()
	var b []byte
	switch v := v.(type) {
	case string: // raw JSON, for malformed or duplicate members
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Sign builds a compact JWS by hand, so tests control every byte of the
// header and claims. key is *rsa.PrivateKey (RS256/PS256), *ecdsa.PrivateKey
// (ES256), ed25519.PrivateKey (EdDSA) or []byte (HS256), whatever the
// header says.
func Sign(t testing.TB, signAlg string, key any, header, claims any) string {
	t.Helper()
	input := B64JSON(t, header) + "." + B64JSON(t, claims)
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch signAlg {
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, sum[:])
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, sum[:], nil)
	case "ES256":
		r, s, e := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), sum[:])
		if e != nil {
			t.Fatal(e)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case "EdDSA":
		sig = ed25519.Sign(key.(ed25519.PrivateKey), []byte(input))
	case "HS256":
		m := hmac.New(sha256.New, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "none":
	default:
		t.Fatalf("Sign: unknown alg %s", signAlg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}
