package nodeas

import (
	"testing"
)

// TestDPoPClientProofBindsAToken: a proof from the dpop package gets a
// DPoP-bound token from oidc-provider, bound to the key's thumbprint.
func TestDPoPClientProofBindsAToken(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := StartDPoPClient(t)
	for _, alg := range []string{"ES256", "Ed25519"} {
		k := c.NewKey(t, alg)
		tr := s.RequestToken(t, TokenRequest{ClientID: "svc-a", Scopes: []string{"read"},
			DPoP: c.Proof(t, k, ProofOptions{Method: "POST", URL: s.TokenURL()})})
		if tr.TokenType != "DPoP" {
			t.Fatalf("%s: token_type %q", alg, tr.TokenType)
		}
		m := gatewayIntrospect(t, s, tr.AccessToken)
		if cnf, _ := m["cnf"].(map[string]any); cnf["jkt"] != k.JKT {
			t.Errorf("%s: cnf %v, want jkt %s", alg, m["cnf"], k.JKT)
		}
	}
}
