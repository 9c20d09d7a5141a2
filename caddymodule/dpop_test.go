package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/nodeas"
)

// dpopResource is the resource indicator that makes oidc-provider issue
// JWT access tokens (RFC 9068) with cnf.jkt.
const dpopResource = "https://api.example.com/"

// nodeJWTSite verifies oidc-provider's JWT access tokens locally.
func nodeJWTSite(as *nodeas.Server, extra string) string {
	return fmt.Sprintf(`	bearer_auth {
		issuer %s
		audience %s
		jwt
%s
	}
	respond "ok {http.auth.user.id}"`, as.Issuer(), dpopResource, extra)
}

// dpopDo sends token with the given scheme, and proof (if any) as the DPoP
// header.
func (tc *testCaddy) dpopDo(method, path, authorization, proof string) result {
	tc.t.Helper()
	return tc.do(method, path, map[string]string{"Authorization": authorization, "DPoP": proof}, nil)
}

// challengeError finds the challenge of scheme in WWW-Authenticate and
// returns its error attribute ("" without one), and whether it was there.
func challengeError(r result, scheme string) (code string, found bool) {
	for _, v := range r.header.Values("WWW-Authenticate") {
		if !strings.HasPrefix(v, scheme+" ") {
			continue
		}
		if _, rest, ok := strings.Cut(v, `error="`); ok {
			code, _, _ = strings.Cut(rest, `"`)
		}
		return code, true
	}
	return "", false
}

// TestDPoPBoundTokensFromOIDCProvider: DPoP-bound tokens issued by
// node-oidc-provider (opaque and introspected, and JWTs verified locally),
// presented with proofs made by the npm dpop package. Every refusal is 401
// with the RFC 9449 §7.1 error, and is followed by the same token presented
// correctly, which must pass: no failure is cached against the token. The
// route runs with dpop off: bindings are enforced whatever the mode.
func TestDPoPBoundTokensFromOIDCProvider(t *testing.T) {
	as := nodeas.Start(t, nodeas.WithResourceServer(dpopResource, map[string]any{"accessTokenFormat": "jwt"}))
	client := nodeas.StartDPoPClient(t)
	for _, mode := range []struct {
		name, resource string
		site           func(string) string
	}{
		{"introspection", "", func(extra string) string { return nodeSite(as, extra) }},
		{"jwt", dpopResource, func(extra string) string { return nodeJWTSite(as, extra) }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			tc := startCaddy(t, mode.site(""))
			key := client.NewKey(t, "ES256")
			other := client.NewKey(t, "ES256")
			bound := func(k nodeas.DPoPKey) string {
				return as.RequestToken(t, nodeas.TokenRequest{ClientID: "svc-a", Scopes: []string{"read"}, Resource: mode.resource,
					DPoP: client.Proof(t, k, nodeas.ProofOptions{Method: "POST", URL: as.TokenURL()})}).AccessToken
			}
			token := bound(key)
			url := tc.base + "/things"
			proof := func(o nodeas.ProofOptions) string {
				if o.Method == "" {
					o.Method = "GET"
				}
				if o.URL == "" {
					o.URL = url
				}
				return client.Proof(t, key, o)
			}
			good := func() {
				t.Helper()
				r := tc.dpopDo("GET", "/things?page=2", "DPoP "+token, proof(nodeas.ProofOptions{AccessToken: token}))
				if r.status != http.StatusOK {
					t.Fatalf("good request: status %d, body %q, challenge %q", r.status, r.body, r.header.Values("WWW-Authenticate"))
				}
			}
			good()

			replayed := proof(nodeas.ProofOptions{AccessToken: token})
			if r := tc.dpopDo("GET", "/things", "DPoP "+token, replayed); r.status != http.StatusOK {
				t.Fatalf("first use of a proof: %d %q", r.status, r.body)
			}
			edKey := client.NewKey(t, "Ed25519")
			edToken := bound(edKey)
			if r := tc.dpopDo("GET", "/things", "DPoP "+edToken, client.Proof(t, edKey, nodeas.ProofOptions{Method: "GET", URL: url, AccessToken: edToken})); r.status != http.StatusOK {
				t.Fatalf("Ed25519 proof: %d %q %q", r.status, r.body, r.header.Values("WWW-Authenticate"))
			}

			unbound := as.RequestToken(t, nodeas.TokenRequest{ClientID: "svc-a", Scopes: []string{"read"}, Resource: mode.resource}).AccessToken
			cases := []struct {
				name          string
				authorization string
				proof         string
				scheme, code  string // the challenge that carries the error
			}{
				{"replayed proof", "DPoP " + token, replayed, "DPoP", "invalid_dpop_proof"},
				{"proof for another URI", "DPoP " + token, proof(nodeas.ProofOptions{URL: tc.base + "/other", AccessToken: token}), "DPoP", "invalid_dpop_proof"},
				{"proof for another method", "DPoP " + token, proof(nodeas.ProofOptions{Method: "POST", AccessToken: token}), "DPoP", "invalid_dpop_proof"},
				{"stale proof", "DPoP " + token, proof(nodeas.ProofOptions{AccessToken: token, Skew: -5 * time.Minute}), "DPoP", "invalid_dpop_proof"},
				{"proof from the future", "DPoP " + token, proof(nodeas.ProofOptions{AccessToken: token, Skew: 5 * time.Minute}), "DPoP", "invalid_dpop_proof"},
				{"proof for another token", "DPoP " + token, proof(nodeas.ProofOptions{AccessToken: unbound}), "DPoP", "invalid_dpop_proof"},
				{"proof without ath", "DPoP " + token, proof(nodeas.ProofOptions{}), "DPoP", "invalid_dpop_proof"},
				{"proof by another key", "DPoP " + token, client.Proof(t, other, nodeas.ProofOptions{Method: "GET", URL: url, AccessToken: token}), "DPoP", "invalid_dpop_proof"},
				{"bound token as Bearer", "Bearer " + token, "", "Bearer", "invalid_token"},
				{"bound token as Bearer with a proof", "Bearer " + token, proof(nodeas.ProofOptions{AccessToken: token}), "Bearer", "invalid_token"},
				{"unbound token with a proof", "DPoP " + unbound, proof(nodeas.ProofOptions{AccessToken: unbound}), "DPoP", "invalid_token"},
				{"DPoP scheme without a proof", "DPoP " + token, "", "DPoP", "invalid_dpop_proof"},
				{"typ JWT", "DPoP " + token, proof(nodeas.ProofOptions{AccessToken: token, Tamper: "typ_jwt"}), "DPoP", "invalid_dpop_proof"},
				{"alg none", "DPoP " + token, proof(nodeas.ProofOptions{AccessToken: token, Tamper: "alg_none"}), "DPoP", "invalid_dpop_proof"},
				{"private key in jwk", "DPoP " + token, proof(nodeas.ProofOptions{AccessToken: token, Tamper: "private_jwk"}), "DPoP", "invalid_dpop_proof"},
				{"bad signature", "DPoP " + token, proof(nodeas.ProofOptions{AccessToken: token, Tamper: "bad_signature"}), "DPoP", "invalid_dpop_proof"},
			}
			for _, c := range cases {
				r := tc.dpopDo("GET", "/things", c.authorization, c.proof)
				if r.status != http.StatusUnauthorized {
					t.Errorf("%s: status %d, want 401 (body %q)", c.name, r.status, r.body)
				}
				if code, found := challengeError(r, c.scheme); !found || code != c.code {
					t.Errorf("%s: WWW-Authenticate %q, want a %s challenge with error=%q", c.name, r.header.Values("WWW-Authenticate"), c.scheme, c.code)
				}
				if !strings.Contains(r.body, `"error":"`+c.code+`"`) {
					t.Errorf("%s: body %q, want error %s", c.name, r.body, c.code)
				}
				good()
			}
			// The unbound token is still a good Bearer token.
			if r := tc.get("/things", "Bearer "+unbound); r.status != http.StatusOK {
				t.Errorf("unbound token as Bearer: %d %q", r.status, r.body)
			}
			if strings.Contains(tc.logs(), token) || strings.Contains(tc.logs(), replayed) {
				t.Error("a token or a proof reached the log")
			}
		})
	}
}

// TestDPoPRequiredRefusesUnboundTokensAndChallengesOnlyDPoP: dpop required
// takes bound tokens with proofs only, and its challenges name DPoP alone
// (with algs, RFC 9449 §7.1; no error code without credentials).
func TestDPoPRequiredRefusesUnboundTokensAndChallengesOnlyDPoP(t *testing.T) {
	as := nodeas.Start(t)
	client := nodeas.StartDPoPClient(t)
	tc := startCaddy(t, nodeSite(as, "\t\tdpop required"))
	key := client.NewKey(t, "ES256")
	token := as.RequestToken(t, nodeas.TokenRequest{ClientID: "svc-a", Scopes: []string{"read"},
		DPoP: client.Proof(t, key, nodeas.ProofOptions{Method: "POST", URL: as.TokenURL()})}).AccessToken
	unbound := as.Token(t, "svc-a", "read")

	r := tc.get("/", "")
	if r.status != http.StatusUnauthorized || len(r.header.Values("WWW-Authenticate")) != 1 ||
		!strings.HasPrefix(r.header.Get("WWW-Authenticate"), `DPoP realm="tokengate", algs="ES256 `) || strings.Contains(r.header.Get("WWW-Authenticate"), "error") {
		t.Errorf("no credentials: %d %q", r.status, r.header.Values("WWW-Authenticate"))
	}
	r = tc.get("/", "Bearer "+unbound)
	if code, found := challengeError(r, "DPoP"); r.status != http.StatusUnauthorized || code != "invalid_token" || !found {
		t.Errorf("unbound token: %d %q", r.status, r.header.Values("WWW-Authenticate"))
	}
	if _, found := challengeError(r, "Bearer"); found {
		t.Errorf("Bearer offered with dpop required: %q", r.header.Values("WWW-Authenticate"))
	}
	r = tc.dpopDo("GET", "/", "DPoP "+token, client.Proof(t, key, nodeas.ProofOptions{Method: "GET", URL: tc.base + "/", AccessToken: token}))
	if r.status != http.StatusOK {
		t.Errorf("bound token with proof: %d %q", r.status, r.body)
	}
}

// TestDPoPOptionalOffersBearerFirst: with dpop optional both challenges are
// offered, Bearer first (clients read the first), without error codes when
// no credentials were sent.
func TestDPoPOptionalOffersBearerFirst(t *testing.T) {
	as := nodeas.Start(t)
	tc := startCaddy(t, nodeSite(as, "\t\tdpop optional {\n\t\t\talgorithms ES256 EdDSA Ed25519\n\t\t}"))
	r := tc.get("/", "")
	got := r.header.Values("WWW-Authenticate")
	want := []string{`Bearer realm="tokengate"`, `DPoP realm="tokengate", algs="ES256 EdDSA Ed25519"`}
	if r.status != http.StatusUnauthorized || strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("no credentials: %d %q, want %q", r.status, got, want)
	}
	if r := tc.get("/", "Bearer "+as.Token(t, "svc-a", "read")); r.status != http.StatusOK {
		t.Errorf("unbound Bearer token with dpop optional: %d", r.status)
	}
}

// With server nonces on (RFC 9449 §9), a proof without the current nonce is
// refused with use_dpop_nonce and the nonce to use; the client's retry with
// it passes, and every DPoP answer carries the current nonce. A made-up
// nonce is refused the same way.
func TestDPoPServerNonces(t *testing.T) {
	as := nodeas.Start(t)
	client := nodeas.StartDPoPClient(t)
	tc := startCaddy(t, nodeSite(as, "\t\tdpop optional {\n\t\t\tnonce\n\t\t}"))
	key := client.NewKey(t, "ES256")
	token := as.RequestToken(t, nodeas.TokenRequest{ClientID: "svc-a", Scopes: []string{"read"},
		DPoP: client.Proof(t, key, nodeas.ProofOptions{Method: "POST", URL: as.TokenURL()})}).AccessToken
	url := tc.base + "/things"
	proof := func(nonce string) string {
		return client.Proof(t, key, nodeas.ProofOptions{Method: "GET", URL: url, AccessToken: token, Nonce: nonce})
	}

	for _, nonce := range []string{"", "made-up-nonce"} {
		r := tc.dpopDo("GET", "/things", "DPoP "+token, proof(nonce))
		if r.status != http.StatusUnauthorized || !strings.Contains(strings.Join(r.header.Values("WWW-Authenticate"), "|"), `error="use_dpop_nonce"`) {
			t.Fatalf("proof with nonce %q: %d %q, want 401 use_dpop_nonce", nonce, r.status, r.header.Values("WWW-Authenticate"))
		}
		if r.header.Get("DPoP-Nonce") == "" {
			t.Fatal("use_dpop_nonce without a DPoP-Nonce header")
		}
	}
	r := tc.dpopDo("GET", "/things", "DPoP "+token, proof(""))
	nonce := r.header.Get("DPoP-Nonce")
	r = tc.dpopDo("GET", "/things", "DPoP "+token, proof(nonce))
	if r.status != http.StatusOK {
		t.Fatalf("retry with the server's nonce: %d %q %q", r.status, r.body, r.header.Values("WWW-Authenticate"))
	}
	if r.header.Get("DPoP-Nonce") == "" {
		t.Error("a DPoP answer without the current nonce")
	}
	// Unbound Bearer requests are not DPoP's business: no nonce needed.
	if r := tc.get("/", "Bearer "+as.Token(t, "svc-a", "read")); r.status != http.StatusOK || r.header.Get("DPoP-Nonce") != "" {
		t.Errorf("Bearer request: %d, DPoP-Nonce %q", r.status, r.header.Get("DPoP-Nonce"))
	}
}
