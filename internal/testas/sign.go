package testas

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// SignToken signs claims as an RS256 JWS with this server's current signing
// key, under its kid (or, if kid is not empty, under kid instead), typ JWT.
// The server never issues such a token: it is how a test makes the tokens
// an attacker holding this server's key could make — claiming another
// issuer, say, or naming another server's kid.
func (s *Server) SignToken(t testing.TB, kid string, claims map[string]any) string {
	t.Helper()
	s.store.mu.RLock()
	key := s.store.current
	s.store.mu.RUnlock()
	if kid == "" {
		kid = key.id
	}
	seg := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("testas: SignToken: %v", err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := seg(map[string]any{"alg": "RS256", "kid": kid, "typ": "JWT"}) + "." + seg(claims)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatalf("testas: SignToken: %v", err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}
