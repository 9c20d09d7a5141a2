package dpop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/tokengate/tokengate/introspect/claims"
)

// TestKeyCacheChangesNoCheck: a client's key is parsed once and reused for
// its later proofs, and nothing a proof says is taken from the cache: a
// proof naming a cached key but signed by another is refused, as is one
// whose jwk adds a private member or whose alg does not suit the key.
func TestKeyCacheChangesNoCheck(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	v := &Verifier{Now: func() time.Time { return now }}
	if err := v.Init(); err != nil {
		t.Fatal(err)
	}
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	req := Request{Method: "GET", URI: "https://api.example.com/x"}
	n := 0
	proof := func(signer *ecdsa.PrivateKey, jwk map[string]any, alg string) string {
		n++
		h, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": jwk})
		p, _ := json.Marshal(map[string]any{"jti": "j" + strconv.Itoa(n), "htm": req.Method, "htu": req.URI, "iat": now.Unix()})
		input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
		sum := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, signer, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return input + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	jwkOf := func(k *ecdsa.PrivateKey) map[string]any {
		b, _ := k.PublicKey.Bytes() // uncompressed point
		return map[string]any{"kty": "EC", "crv": "P-256",
			"x": base64.RawURLEncoding.EncodeToString(b[1:33]), "y": base64.RawURLEncoding.EncodeToString(b[33:])}
	}
	thumb := func(k *ecdsa.PrivateKey) string {
		j, _ := readJWK(jwkOf(k))
		return j.thumbprint()
	}
	reason := func(err error) string {
		var e *claims.Error
		if errors.As(err, &e) {
			return e.Reason
		}
		return ""
	}
	for i := range 3 {
		for _, k := range []*ecdsa.PrivateKey{k1, k2} {
			p, err := v.Verify(proof(k, jwkOf(k), "ES256"), req)
			if err != nil || p.Thumbprint != thumb(k) {
				t.Fatalf("round %d: %v, thumbprint %v", i, err, p)
			}
		}
	}
	if len(v.keys.m) != 2 {
		t.Errorf("%d keys cached, want 2", len(v.keys.m))
	}
	if _, err := v.Verify(proof(k2, jwkOf(k1), "ES256"), req); reason(err) != "dpop_signature" {
		t.Errorf("k1's jwk, k2's signature: %v", err)
	}
	withD := jwkOf(k1)
	d, _ := k1.Bytes()
	withD["d"] = base64.RawURLEncoding.EncodeToString(d)
	if _, err := v.Verify(proof(k1, withD, "ES256"), req); reason(err) != "dpop_private_key" {
		t.Errorf("a private member next to a cached key: %v", err)
	}
	if _, err := v.Verify(proof(k1, jwkOf(k1), "ES384"), req); reason(err) != "dpop_jwk" {
		t.Errorf("a P-256 key under ES384: %v", err)
	}
}
