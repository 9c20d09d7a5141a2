package testas

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// A client's Claims reach its JWT access tokens and the introspection
// answers about its tokens, without changing the registered claims.
func TestClientClaimsReachTokensAndIntrospection(t *testing.T) {
	claims := map[string]any{"acr": "urn:example:gold", "auth_time": 1700000000, "sub": "ignored"}
	s := Start(t, WithClients(
		Client{ID: "user-jwt", Secret: "s1", Scopes: []string{"read"}, JWTAccessTokens: true, Claims: claims},
		Client{ID: "user-opaque", Secret: "s2", Scopes: []string{"read"}, Claims: claims},
	))

	tok := s.Token(t, "user-jwt", "read")
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var jc map[string]any
	if err := json.Unmarshal(payload, &jc); err != nil {
		t.Fatal(err)
	}
	if jc["acr"] != "urn:example:gold" || jc["auth_time"] != float64(1700000000) || jc["sub"] != "user-jwt" || jc["scope"] != "read" {
		t.Errorf("JWT claims %v: want acr, auth_time, scope added and sub unchanged", jc)
	}

	for _, tok := range []string{tok, s.Token(t, "user-opaque", "read")} {
		m := gatewayIntrospect(t, s, tok)
		if m["active"] != true || m["acr"] != "urn:example:gold" || m["auth_time"] != float64(1700000000) || m["sub"] == "ignored" {
			t.Errorf("introspection %v: want acr and auth_time, sub unchanged", m)
		}
	}
	// Clients without Claims are as before.
	if m := gatewayIntrospect(t, s, s.Token(t, "svc-a", "read")); m["acr"] != nil || m["auth_time"] != nil {
		t.Errorf("introspection of a client without Claims: %v", m)
	}
}
