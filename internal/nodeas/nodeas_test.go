package nodeas

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// The JWT-shaped junk token of the brief: a JOSE header, a payload, garbage.
const junkJWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.AAAA"

type authMode int

const (
	basicAuth authMode = iota
	postAuth
)

// introspect calls the introspection endpoint the way a gateway would: plain
// net/http, form POST.
func introspect(t *testing.T, s *Server, token, id, secret string, mode authMode) (int, map[string]any, string) {
	t.Helper()
	form := url.Values{"token": {token}}
	if mode == postAuth {
		form.Set("client_id", id)
		form.Set("client_secret", secret)
	}
	req, _ := http.NewRequest(http.MethodPost, s.IntrospectionURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if mode == basicAuth {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, map[string]any, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: not JSON (%v): %s", req.URL, err, raw)
	}
	return resp.StatusCode, m, string(raw)
}

func gatewayIntrospect(t *testing.T, s *Server, token string) map[string]any {
	t.Helper()
	status, m, raw := introspect(t, s, token, GatewayID, GatewaySecret, basicAuth)
	if status != http.StatusOK {
		t.Fatalf("introspect: %d %s", status, raw)
	}
	return m
}

func segments(tok string) int { return strings.Count(tok, ".") + 1 }

func TestDiscovery(t *testing.T) {
	t.Parallel()
	s := Start(t)
	req, _ := http.NewRequest(http.MethodGet, s.DiscoveryURL(), nil)
	status, doc, raw := do(t, req)
	if status != http.StatusOK {
		t.Fatalf("discovery: %d %s", status, raw)
	}
	for k, want := range map[string]string{
		"issuer":                 s.Issuer(),
		"token_endpoint":         s.TokenURL(),
		"introspection_endpoint": s.IntrospectionURL(),
		"revocation_endpoint":    s.RevocationURL(),
		"jwks_uri":               s.JWKSURL(),
	} {
		if doc[k] != want {
			t.Errorf("discovery %s = %v, want %s", k, doc[k], want)
		}
	}
	if !strings.HasPrefix(s.Issuer(), "http://127.0.0.1:") {
		t.Errorf("issuer %s is not loopback", s.Issuer())
	}
	// RFC 8414's well-known path answers the same document.
	req, _ = http.NewRequest(http.MethodGet, s.Issuer()+"/.well-known/oauth-authorization-server", nil)
	if status, doc, raw := do(t, req); status != http.StatusOK || doc["issuer"] != s.Issuer() {
		t.Errorf("oauth-authorization-server: %d %s", status, raw)
	}

	set := fetchJWKS(t, s)
	algs := map[string]bool{}
	for i := range set.Len() {
		k, _ := set.Key(i)
		algs[k.Algorithm().String()] = true
		if k.KeyID() == "" {
			t.Errorf("JWKS key %d has no kid", i)
		}
	}
	if !algs["RS256"] || !algs["ES256"] {
		t.Errorf("JWKS algorithms %v, want RS256 and ES256", algs)
	}
}

func TestOpaqueTokenIntrospectAndRevoke(t *testing.T) {
	t.Parallel()
	s := Start(t)
	tok := s.Token(t, "svc-a", "read", "write")
	if n := segments(tok); n != 1 {
		t.Fatalf("opaque token has %d segments, want 1", n)
	}

	for _, mode := range []authMode{basicAuth, postAuth} {
		status, m, raw := introspect(t, s, tok, GatewayID, GatewaySecret, mode)
		if status != http.StatusOK || m["active"] != true {
			t.Fatalf("auth mode %d: %d %s", mode, status, raw)
		}
		for k, want := range map[string]any{
			"client_id":  "svc-a",
			"scope":      "read write",
			"iss":        s.Issuer(),
			"token_type": "Bearer",
		} {
			if m[k] != want {
				t.Errorf("auth mode %d: %s = %v, want %v", mode, k, m[k], want)
			}
		}
		exp, _ := m["exp"].(float64)
		if d := time.Until(time.Unix(int64(exp), 0)); d < 4*time.Minute || d > 6*time.Minute {
			t.Errorf("exp in %v, want ~5m", d)
		}
	}

	// A client that may not introspect learns nothing, even about a live token.
	if status, m, raw := introspect(t, s, tok, "svc-b", "secret-b", basicAuth); status != http.StatusOK || m["active"] != false || len(m) != 1 {
		t.Errorf("svc-b introspecting: %d %s, want 200 {\"active\":false}", status, raw)
	}

	s.Revoke(t, "svc-a", tok)
	if m := gatewayIntrospect(t, s, tok); m["active"] != false || len(m) != 1 {
		t.Errorf("after revocation: %v, want {\"active\":false}", m)
	}
	if n := s.IntrospectionCalls(); n != 4 {
		t.Errorf("IntrospectionCalls = %d, want 4", n)
	}
	if n := s.RevocationCalls(); n != 1 {
		t.Errorf("RevocationCalls = %d, want 1", n)
	}
	s.ResetCounts()
	if n := s.IntrospectionCalls(); n != 0 {
		t.Errorf("after ResetCounts: IntrospectionCalls = %d", n)
	}
}

func TestJunkTokens(t *testing.T) {
	t.Parallel()
	s := Start(t)

	// oidc-provider's rejectStructuredTokens: a token of three or five
	// segments whose first decodes to a JSON object is refused before any
	// lookup — junk and a JWT this very server issued alike.
	realJWT := s.TokenWithResource(t, "svc-a", "https://api.example.com/", "read")
	const wantBody = `{"error":"unsupported_token_type","error_description":"Structured JWT Tokens cannot be introspected via the introspection_endpoint"}`
	for name, tok := range map[string]string{"junk": junkJWT, "issued by this server": realJWT, "five segments": "e30.e30.e30.e30.e30"} {
		status, m, raw := introspect(t, s, tok, GatewayID, GatewaySecret, basicAuth)
		if status != http.StatusBadRequest || m["error"] != "unsupported_token_type" {
			t.Errorf("%s JWT: %d %s, want 400 unsupported_token_type", name, status, raw)
		}
		if raw != wantBody {
			t.Errorf("%s JWT body:\n got %s\nwant %s", name, raw, wantBody)
		}
	}

	// The revocation endpoint refuses them the same way (RFC 7009 would have
	// a 200 for an unknown token).
	req, _ := http.NewRequest(http.MethodPost, s.RevocationURL(), strings.NewReader(url.Values{"token": {junkJWT}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc-a", "secret-a")
	if status, _, raw := do(t, req); status != http.StatusBadRequest ||
		raw != `{"error":"unsupported_token_type","error_description":"Structured JWT Tokens cannot be revoked via the revocation_endpoint"}` {
		t.Errorf("revoking a JWT-shaped token: %d %s", status, raw)
	}

	// Junk that is not JWT-shaped is simply unknown.
	for _, tok := range []string{"junk", "eyJhbGciOiJSUzI1NiJ9", "a.b.c", "e30.e30"} {
		status, _, raw := introspect(t, s, tok, GatewayID, GatewaySecret, basicAuth)
		if status != http.StatusOK || raw != `{"active":false}` {
			t.Errorf("%q: %d %s, want 200 {\"active\":false}", tok, status, raw)
		}
	}

	// Wrong gateway credentials: 401 invalid_client.
	status, m, raw := introspect(t, s, "junk", GatewayID, "wrong", basicAuth)
	if status != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Errorf("wrong secret: %d %s, want 401 invalid_client", status, raw)
	}
}

func fetchJWKS(t *testing.T, s *Server) jwk.Set {
	t.Helper()
	set, err := jwk.Fetch(context.Background(), s.JWKSURL())
	if err != nil {
		t.Fatalf("fetch JWKS: %v", err)
	}
	return set
}

func jwtHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.SplitN(tok, ".", 2)[0])
	if err != nil {
		t.Fatalf("JWT header: %v", err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("JWT header: %v", err)
	}
	return h
}

func TestTokenWithResource(t *testing.T) {
	t.Parallel()
	const api, ecAPI = "https://api.example.com/", "https://ec.example.com"
	s := Start(t, WithResourceServer(ecAPI, map[string]any{"jwt": map[string]any{"sign": map[string]any{"alg": "ES256"}}}))
	set := fetchJWKS(t, s)

	for _, tc := range []struct{ resource, alg string }{{api, "RS256"}, {ecAPI, "ES256"}} {
		tok := s.TokenWithResource(t, "svc-a", tc.resource, "read", "admin")
		if n := segments(tok); n != 3 {
			t.Fatalf("%s: token has %d segments, want 3", tc.resource, n)
		}
		h := jwtHeader(t, tok)
		if h["alg"] != tc.alg || h["typ"] != "at+jwt" {
			t.Errorf("%s: header %v, want alg %s, typ at+jwt", tc.resource, h, tc.alg)
		}
		tk, err := jwt.Parse([]byte(tok), jwt.WithKeySet(set), jwt.WithIssuer(s.Issuer()), jwt.WithAudience(tc.resource))
		if err != nil {
			t.Fatalf("%s: verify: %v", tc.resource, err)
		}
		if aud := tk.Audience(); len(aud) != 1 || aud[0] != tc.resource {
			t.Errorf("%s: aud %v", tc.resource, aud)
		}
		claims := tk.PrivateClaims()
		if claims["client_id"] != "svc-a" || claims["scope"] != "read admin" || tk.Subject() != "svc-a" {
			t.Errorf("%s: claims sub=%q %v", tc.resource, tk.Subject(), claims)
		}
	}

	// Without a resource the same client gets an opaque token.
	if tok := s.Token(t, "svc-a"); segments(tok) != 1 {
		t.Errorf("token without resource has %d segments", segments(tok))
	}
}

func TestScopes(t *testing.T) {
	t.Parallel()
	s := Start(t,
		WithClients(Client{ID: "svc-c", Secret: "p&ss w:rd", Scopes: []string{"read", "extra"}}),
		WithTokenLifetime(90*time.Second))

	// No scopes: the harness asks for all of the client's.
	if tr := s.RequestToken(t, TokenRequest{ClientID: "svc-a"}); tr.Scope != "read write admin" || tr.TokenType != "Bearer" || tr.ExpiresIn != 90 {
		t.Errorf("svc-a default: %+v", tr)
	}
	// The lifetime applies to JWT access tokens too.
	if tr := s.RequestToken(t, TokenRequest{ClientID: "svc-a", Resource: "https://api.example.com/"}); tr.ExpiresIn != 90 {
		t.Errorf("svc-a with resource: expires_in %d, want 90", tr.ExpiresIn)
	}
	// A client added by WithClients, with a secret that needs encoding and a
	// scope of its own.
	if tr := s.RequestToken(t, TokenRequest{ClientID: "svc-c"}); tr.Scope != "read extra" {
		t.Errorf("svc-c: scope %q", tr.Scope)
	}

	// A scope the client is not registered for is refused.
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}
	req, _ := http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc-b", "secret-b")
	if status, m, raw := do(t, req); status != http.StatusBadRequest || m["error"] != "invalid_scope" {
		t.Errorf("svc-b asking for admin: %d %s, want 400 invalid_scope", status, raw)
	}
}

// dpopProof builds an RFC 9449 proof for POST u, signed by key.
func dpopProof(t *testing.T, key *ecdsa.PrivateKey, u string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{
		"jti": rand.Text(),
		"htm": http.MethodPost,
		"htu": u,
		"iat": time.Now().Unix(),
	})
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return proof
}

func TestDPoPBoundToken(t *testing.T) {
	t.Parallel()
	s := Start(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := (&jose.JSONWebKey{Key: &key.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	jkt := base64.RawURLEncoding.EncodeToString(tp)

	tr := s.RequestToken(t, TokenRequest{ClientID: "svc-a", Scopes: []string{"read"}, DPoP: dpopProof(t, key, s.TokenURL())})
	if tr.TokenType != "DPoP" {
		t.Errorf("token_type %q, want DPoP", tr.TokenType)
	}
	m := gatewayIntrospect(t, s, tr.AccessToken)
	cnf, _ := m["cnf"].(map[string]any)
	if m["active"] != true || m["token_type"] != "DPoP" || cnf["jkt"] != jkt {
		t.Errorf("introspection %v, want active DPoP token with cnf.jkt %s", m, jkt)
	}

	// With a resource: a JWT carrying cnf.jkt.
	tr = s.RequestToken(t, TokenRequest{ClientID: "svc-a", Resource: "https://api.example.com/", DPoP: dpopProof(t, key, s.TokenURL())})
	tk, err := jwt.Parse([]byte(tr.AccessToken), jwt.WithKeySet(fetchJWKS(t, s)))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := tk.Get("cnf")
	if cm, _ := c.(map[string]any); cm["jkt"] != jkt {
		t.Errorf("JWT cnf %v, want jkt %s", c, jkt)
	}
}

func TestStopRestart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	tok := s.Token(t, "svc-a", "read")
	jwtTok := s.TokenWithResource(t, "svc-a", "https://api.example.com/")
	if m := gatewayIntrospect(t, s, tok); m["active"] != true {
		t.Fatalf("before stop: %v", m)
	}
	issuer := s.Issuer()

	p := s.proc
	s.Stop()
	s.Stop() // idempotent
	if s.Running() {
		t.Fatal("Running after Stop")
	}
	// Closing stdin made node exit by itself (status 0), not the fallback kill.
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("node exit status %d after stdin closed, want 0", code)
	}
	_, err := http.Post(s.IntrospectionURL(), "application/x-www-form-urlencoded", nil)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("while stopped: %v, want connection refused", err)
	}
	if n := s.IntrospectionCalls(); n != 1 {
		t.Errorf("IntrospectionCalls while stopped = %d, want 1", n)
	}

	s.Restart(t)
	s.Restart(t) // no-op while running
	if s.Issuer() != issuer {
		t.Fatalf("issuer changed: %s -> %s", issuer, s.Issuer())
	}
	// Same state: the opaque token is still known, the JWT still verifies.
	if m := gatewayIntrospect(t, s, tok); m["active"] != true || m["client_id"] != "svc-a" {
		t.Errorf("after restart: %v", m)
	}
	if _, err := jwt.Parse([]byte(jwtTok), jwt.WithKeySet(fetchJWKS(t, s)), jwt.WithIssuer(issuer)); err != nil {
		t.Errorf("JWT from before the restart: %v", err)
	}
	if n := s.IntrospectionCalls(); n != 2 {
		t.Errorf("IntrospectionCalls across restart = %d, want 2", n)
	}
}

func TestNodeVersionOK(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]bool{
		"20.20.2": true, "20.18.0": true, "22.1.0": true, "24.0.0": true,
		"20.17.9": false, "18.20.0": false, "": false, "x.y": false,
	} {
		if got := nodeVersionOK(v); got != want {
			t.Errorf("nodeVersionOK(%q) = %v", v, got)
		}
	}
}
