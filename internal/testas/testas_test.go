package testas

import (
	"context"
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
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

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

func TestOpaqueTokenIntrospectAndRevoke(t *testing.T) {
	t.Parallel()
	s := Start(t)
	tok := s.Token(t, "svc-a", "read", "write")
	if n := segments(tok); n != 5 {
		t.Fatalf("opaque token has %d segments, want 5 (JWE)", n)
	}

	status, m, raw := introspect(t, s, tok, GatewayID, GatewaySecret, basicAuth)
	t.Logf("introspection: %s", raw)
	if status != http.StatusOK || m["active"] != true {
		t.Fatalf("want active: %d %s", status, raw)
	}
	for k, want := range map[string]any{
		"scope": "read write", "client_id": "svc-a", "sub": "svc-a",
		"iss": s.Issuer(), "token_type": "Bearer",
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if aud, _ := m["aud"].([]any); len(aud) != 1 || aud[0] != "svc-a" {
		t.Errorf("aud = %v", m["aud"])
	}
	exp, _ := m["exp"].(float64)
	iat, _ := m["iat"].(float64)
	if d := time.Duration(exp-iat) * time.Second; d != 5*time.Minute {
		t.Errorf("exp-iat = %v, want 5m", d)
	}
	if now := float64(time.Now().Unix()); iat < now-5 || iat > now+5 {
		t.Errorf("iat %v not now", iat)
	}

	s.Revoke(t, "svc-a", tok)
	if m := gatewayIntrospect(t, s, tok); len(m) != 1 || m["active"] != false {
		t.Fatalf("after revoke: %v", m)
	}
	if got := s.IntrospectionCalls(); got != 2 {
		t.Errorf("IntrospectionCalls = %d, want 2", got)
	}
	if s.TokenCalls() != 1 || s.Requests(s.RevocationPath()) != 1 {
		t.Errorf("token/revocation calls = %d/%d", s.TokenCalls(), s.Requests(s.RevocationPath()))
	}
}

func TestDefaultScopesAndInactiveCases(t *testing.T) {
	t.Parallel()
	s := Start(t)
	tr := s.TokenResponse(t, "svc-a")
	if tr.Scope != "read write admin" || tr.TokenType != "Bearer" || tr.ExpiresIn < 290 {
		t.Fatalf("token response %+v", tr)
	}

	// Unknown token, and garbage shaped like each kind.
	for _, tok := range []string{"nope", "a.b.c", "a.b.c.d.e"} {
		if m := gatewayIntrospect(t, s, tok); m["active"] != false {
			t.Errorf("%q: %v", tok, m)
		}
	}
	// A client without CanIntrospect learns nothing.
	if _, m, raw := introspect(t, s, tr.AccessToken, "svc-b", "secret-b", basicAuth); m["active"] != false {
		t.Errorf("svc-b introspecting: %s", raw)
	}
	// Expiry by storage clock.
	s.SetClockOffset(6 * time.Minute)
	if m := gatewayIntrospect(t, s, tr.AccessToken); m["active"] != false {
		t.Errorf("expired token: %v", m)
	}
	s.SetClockOffset(0)
	if m := gatewayIntrospect(t, s, tr.AccessToken); m["active"] != true {
		t.Errorf("token after clock reset: %v", m)
	}
}

func TestScopeNotAllowed(t *testing.T) {
	t.Parallel()
	s := Start(t)
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"read write"}}
	req, _ := http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc-b", "secret-b")
	status, m, raw := do(t, req)
	if status != http.StatusBadRequest || m["error"] != "invalid_scope" {
		t.Fatalf("got %d %s", status, raw)
	}
}

func TestIntrospectionClientAuth(t *testing.T) {
	t.Parallel()
	s := Start(t)
	tok := s.Token(t, "svc-b")

	status, m, raw := introspect(t, s, tok, GatewayID, GatewaySecret, postAuth)
	if status != http.StatusOK || m["active"] != true || m["scope"] != "read" {
		t.Fatalf("client_secret_post: %d %s", status, raw)
	}
	for _, mode := range []authMode{basicAuth, postAuth} {
		status, m, raw = introspect(t, s, tok, GatewayID, "wrong", mode)
		t.Logf("wrong secret (mode %d): %d %s", mode, status, raw)
		if status != http.StatusUnauthorized || m["error"] != "invalid_client" {
			t.Errorf("wrong secret (mode %d): %d %s", mode, status, raw)
		}
	}
	status, m, raw = introspect(t, s, tok, "nobody", "x", basicAuth)
	if status != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Errorf("unknown client: %d %s", status, raw)
	}
	// Wrong secret at the token endpoint too.
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc-a", "wrong")
	if status, m, raw := do(t, req); status != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Errorf("token with wrong secret: %d %s", status, raw)
	}
}

func TestPrivateKeyJWTIntrospection(t *testing.T) {
	t.Parallel()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s := Start(t, WithClients(Client{ID: "gw-key", PublicKey: &priv.PublicKey, KeyID: "k1", CanIntrospect: true}))
	tok := s.Token(t, "svc-a", "admin")

	assertion := func(aud string) string {
		now := time.Now()
		tk, _ := jwt.NewBuilder().Issuer("gw-key").Subject("gw-key").Audience([]string{aud}).
			IssuedAt(now).Expiration(now.Add(time.Minute)).JwtID("j1").Build()
		hdr := jws.NewHeaders()
		_ = hdr.Set(jws.KeyIDKey, "k1")
		signed, err := jwt.Sign(tk, jwt.WithKey(jwa.ES256, priv, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			t.Fatal(err)
		}
		return string(signed)
	}
	post := func(a string) (int, map[string]any, string) {
		form := url.Values{
			"token":                 {tok},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {a},
		}
		req, _ := http.NewRequest(http.MethodPost, s.IntrospectionURL(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return do(t, req)
	}
	if status, m, raw := post(assertion(s.Issuer())); status != http.StatusOK || m["active"] != true || m["scope"] != "admin" {
		t.Fatalf("private_key_jwt: %d %s", status, raw)
	}
	// This AS wants the issuer as aud, not the endpoint URL.
	if status, _, raw := post(assertion(s.IntrospectionURL())); status == http.StatusOK {
		t.Fatalf("endpoint URL as aud accepted: %s", raw)
	}
}

func fetchJWKS(t *testing.T, s *Server) jwk.Set {
	t.Helper()
	set, err := jwk.Fetch(context.Background(), s.JWKSURL())
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func parseJWT(t *testing.T, s *Server, tok string) (jwt.Token, error) {
	t.Helper()
	return jwt.Parse([]byte(tok), jwt.WithKeySet(fetchJWKS(t, s)), jwt.WithIssuer(s.Issuer()), jwt.WithValidate(true))
}

func jwtHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.SplitN(tok, ".", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestJWTAccessToken(t *testing.T) {
	t.Parallel()
	s := Start(t)
	tok := s.Token(t, "svc-jwt", "read", "write")
	if n := segments(tok); n != 3 {
		t.Fatalf("JWT has %d segments", n)
	}
	h := jwtHeader(t, tok)
	if h["kid"] != s.KeyID() || h["alg"] != "RS256" {
		t.Errorf("header %v, want kid %s", h, s.KeyID())
	}
	// The library's signer hard-codes typ "JWT" (op.SignerFromKey); RFC 9068's
	// "at+jwt" is not reachable through op.
	if h["typ"] != "JWT" {
		t.Errorf("typ = %v", h["typ"])
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	t.Logf("JWT header: %v", h)
	t.Logf("JWT claims: %s", payload)

	parsed, err := parseJWT(t, s, tok)
	if err != nil {
		t.Fatalf("verify against JWKS: %v", err)
	}
	claims, _ := parsed.AsMap(context.Background())
	for k, want := range map[string]any{"scope": "read write", "client_id": "svc-jwt", "sub": "svc-jwt"} {
		if claims[k] != want {
			t.Errorf("%s = %v, want %v", k, claims[k], want)
		}
	}
	if aud := parsed.Audience(); len(aud) != 1 || aud[0] != "svc-jwt" {
		t.Errorf("aud = %v", aud)
	}
	if d := parsed.Expiration().Sub(parsed.IssuedAt()); d < 5*time.Minute-2*time.Second || d > 5*time.Minute+2*time.Second {
		t.Errorf("exp-iat = %v", d)
	}
	if parsed.JwtID() == "" {
		t.Error("no jti")
	}

	// JWTs introspect too, and revocation reaches them there.
	if m := gatewayIntrospect(t, s, tok); m["active"] != true || m["scope"] != "read write" || m["jti"] != parsed.JwtID() {
		t.Errorf("introspect JWT: %v", m)
	}
	s.Revoke(t, "svc-jwt", tok)
	if m := gatewayIntrospect(t, s, tok); m["active"] != false {
		t.Errorf("introspect revoked JWT: %v", m)
	}
	if s.JWKSCalls() != 1 {
		t.Errorf("JWKSCalls = %d", s.JWKSCalls())
	}
}

func TestRevokeOnlyByOwner(t *testing.T) {
	t.Parallel()
	s := Start(t)
	tok := s.Token(t, "svc-a")
	form := url.Values{"token": {tok}}
	req, _ := http.NewRequest(http.MethodPost, s.RevocationURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc-b", "secret-b")
	if status, m, raw := do(t, req); status != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Errorf("foreign revoke: %d %s", status, raw)
	}
	if m := gatewayIntrospect(t, s, tok); m["active"] != true {
		t.Errorf("token revoked by a stranger: %v", m)
	}
	s.Revoke(t, "svc-a", "not-a-token") // RFC 7009 §2.2: 200 for invalid tokens
}

func TestRotateKey(t *testing.T) {
	t.Parallel()
	s := Start(t)
	kid1 := s.KeyID()
	tok1 := s.Token(t, "svc-jwt")

	kid2 := s.RotateKey(true)
	if kid2 == kid1 || s.KeyID() != kid2 {
		t.Fatalf("kids %s -> %s (KeyID %s)", kid1, kid2, s.KeyID())
	}
	tok2 := s.Token(t, "svc-jwt")
	if got := jwtHeader(t, tok2)["kid"]; got != kid2 {
		t.Fatalf("new token kid %v, want %s", got, kid2)
	}
	if set := fetchJWKS(t, s); set.Len() != 2 {
		t.Fatalf("JWKS has %d keys, want 2", set.Len())
	}
	for _, tok := range []string{tok1, tok2} {
		if _, err := parseJWT(t, s, tok); err != nil {
			t.Errorf("verify with old key kept: %v", err)
		}
	}

	kid3 := s.RotateKey(false)
	set := fetchJWKS(t, s)
	if k, ok := set.Key(0); set.Len() != 1 || !ok || k.KeyID() != kid3 {
		t.Fatalf("JWKS after dropping old keys: %d keys", set.Len())
	}
	if _, err := parseJWT(t, s, tok1); err == nil {
		t.Error("token signed by a dropped key still verifies")
	}
	if m := gatewayIntrospect(t, s, tok1); m["active"] != false {
		t.Errorf("introspection of token with dropped key: %v", m)
	}
}

func TestStopRestart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	tok := s.Token(t, "svc-a")
	iss := s.Issuer()

	s.Stop()
	s.Stop() // idempotent
	if s.Running() {
		t.Fatal("still running")
	}
	if _, err := http.Get(s.DiscoveryURL()); err == nil {
		t.Fatal("request succeeded while stopped")
	}

	s.Restart(t)
	if s.Issuer() != iss || !strings.HasPrefix(iss, "http://127.0.0.1:") {
		t.Fatalf("issuer %s -> %s", iss, s.Issuer())
	}
	if m := gatewayIntrospect(t, s, tok); m["active"] != true {
		t.Fatalf("token from before restart: %v", m)
	}
	_, disc, _ := do(t, mustGet(t, s.DiscoveryURL()))
	if disc["issuer"] != iss || disc["introspection_endpoint"] != s.IntrospectionURL() ||
		disc["jwks_uri"] != s.JWKSURL() || disc["token_endpoint"] != s.TokenURL() ||
		disc["revocation_endpoint"] != s.RevocationURL() {
		t.Errorf("discovery: %v", disc)
	}
}

func mustGet(t *testing.T, u string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestWithAddrReusesIssuer(t *testing.T) {
	t.Parallel()
	a := Start(t)
	addr := a.Addr()
	a.Stop()
	b := Start(t, WithAddr(addr), WithTokenLifetime(time.Minute))
	if b.Issuer() != a.Issuer() {
		t.Fatalf("%s != %s", b.Issuer(), a.Issuer())
	}
	if tr := b.TokenResponse(t, "svc-b"); tr.ExpiresIn > 60 || tr.ExpiresIn < 55 {
		t.Errorf("expires_in %d with 1m lifetime", tr.ExpiresIn)
	}
}

func TestDelay(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.SetDelay(300 * time.Millisecond)
	c := &http.Client{Timeout: 50 * time.Millisecond}
	start := time.Now()
	_, err := c.Get(s.DiscoveryURL())
	var ne interface{ Timeout() bool }
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("want timeout, got %v", err)
	}
	if time.Since(start) > 250*time.Millisecond {
		t.Errorf("timeout took %v", time.Since(start))
	}
	if s.Requests(s.DiscoveryPath()) != 1 {
		t.Errorf("delayed request not counted")
	}
	// Stop must not wait for a delayed request: once the server has
	// counted it, the request is being delayed.
	go func() { _, _ = http.Get(s.DiscoveryURL()) }()
	deadline := time.Now().Add(5 * time.Second)
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	for s.Requests(s.DiscoveryPath()) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the second request never reached the server")
		}
		<-poll.C
	}
	start = time.Now()
	s.Stop()
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("Stop took %v", d)
	}
}

func TestNegativeClockOffset(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.SetClockOffset(-10 * time.Minute)

	// A JWT born expired: the library checks a JWT's exp against the real
	// clock, so introspection agrees with local verification.
	tr := s.TokenResponse(t, "svc-jwt")
	if tr.ExpiresIn != -300 {
		t.Errorf("expires_in = %d, want -300", tr.ExpiresIn)
	}
	if _, err := parseJWT(t, s, tr.AccessToken); err == nil {
		t.Error("expired JWT verified")
	}
	if m := gatewayIntrospect(t, s, tr.AccessToken); m["active"] != false {
		t.Errorf("expired JWT introspected active: %v", m)
	}

	// An opaque token is judged by the storage clock alone: an AS running
	// behind says active:true with an exp already past by real time.
	opaque := s.Token(t, "svc-a")
	m := gatewayIntrospect(t, s, opaque)
	if exp, _ := m["exp"].(float64); m["active"] != true || int64(exp) >= time.Now().Unix() {
		t.Errorf("opaque token under skewed AS clock: %v", m)
	}
}
