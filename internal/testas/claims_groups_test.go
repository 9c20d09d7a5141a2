package testas

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// A client's extra claims reach its JWT access tokens and its
// introspection answers alike, as JSON of the same shape; registered
// claims stay the server's.
func TestClientClaimsInJWTsAndIntrospection(t *testing.T) {
	claims := map[string]any{
		"groups": []any{"staff", "admin"},
		"tenant": 42,
		"org":    map[string]any{"id": "acme"},
		"iss":    "https://not-the-issuer.example",
	}
	s := Start(t, WithClients(
		Client{ID: "jwt-claims", Secret: "s", Scopes: []string{"read"}, JWTAccessTokens: true, Claims: claims},
		Client{ID: "opaque-claims", Secret: "s", Scopes: []string{"read"}, Claims: claims},
	))
	want := map[string]any{"groups": []any{"staff", "admin"}, "tenant": float64(42), "org": map[string]any{"id": "acme"}}

	parsed, err := parseJWT(t, s, s.Token(t, "jwt-claims", "read"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := parsed.AsMap(context.Background())
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("JWT %s = %#v, want %#v", k, got[k], v)
		}
	}
	if got["iss"] != s.Issuer() || got["scope"] != "read" {
		t.Errorf("JWT iss %v, scope %v: registered claims must stay the server's", got["iss"], got["scope"])
	}

	m := gatewayIntrospect(t, s, s.Token(t, "opaque-claims", "read"))
	for k, v := range want {
		if !reflect.DeepEqual(m[k], v) {
			t.Errorf("introspection %s = %#v, want %#v", k, m[k], v)
		}
	}
	if m["active"] != true || m["iss"] != s.Issuer() {
		t.Errorf("introspection answer %v", m)
	}
}

// SignToken makes tokens the server never issued but that verify against
// its JWKS: with its current kid by default, under another kid on request.
func TestSignTokenUsesTheCurrentKey(t *testing.T) {
	s := Start(t)
	now := time.Now()
	tok := s.SignToken(t, "", map[string]any{"iss": s.Issuer(), "sub": "forged", "exp": now.Add(time.Minute).Unix(), "iat": now.Unix()})
	if h := jwtHeader(t, tok); h["kid"] != s.KeyID() || h["alg"] != "RS256" || h["typ"] != "JWT" {
		t.Errorf("header %v", h)
	}
	parsed, err := parseJWT(t, s, tok)
	if err != nil || parsed.Subject() != "forged" {
		t.Fatalf("a signed token does not verify: %v", err)
	}
	other := s.SignToken(t, "someone-elses-kid", map[string]any{"iss": s.Issuer()})
	if h := jwtHeader(t, other); h["kid"] != "someone-elses-kid" {
		t.Errorf("kid %v", h["kid"])
	}
}
