package caddymodule

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tokengate/tokengate/internal/testas"
	"github.com/tokengate/tokengate/introspect/diagnose"
)

// End-to-end tests of upstream_token (the phantom token) through a real
// Caddy: a real upstream behind reverse_proxy verifies what it receives the
// way an internal API would — with a JOSE library, the gateway's JWKS URL,
// and its own audience — and records every byte, so the tests can show the
// caller's token never arrives.

const (
	phantomIssuer   = "https://gateway.tokengate.test"
	phantomAudience = "orders-service"
	phantomJWKSPath = "/.well-known/gateway-jwks.json"
)

// writeSigningKey writes a new private key of kind RSA, EC or Ed25519 as
// PEM and returns its path.
func writeSigningKey(t testing.TB, kind string) string {
	t.Helper()
	var der []byte
	var typ string
	var err error
	switch kind {
	case "RSA":
		var k *rsa.PrivateKey
		if k, err = rsa.GenerateKey(rand.Reader, 2048); err == nil {
			der, typ = x509.MarshalPKCS1PrivateKey(k), "RSA PRIVATE KEY"
		}
	case "EC":
		var k *ecdsa.PrivateKey
		if k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err == nil {
			der, err = x509.MarshalECPrivateKey(k)
			typ = "EC PRIVATE KEY"
		}
	case "Ed25519":
		var k ed25519.PrivateKey
		if _, k, err = ed25519.GenerateKey(rand.Reader); err == nil {
			der, err = x509.MarshalPKCS8PrivateKey(k)
			typ = "PRIVATE KEY"
		}
	default:
		t.Fatalf("unknown key kind %s", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), strings.ToLower(kind)+".pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// received is one request as the upstream got it, with the verdict of its
// own verification of the Authorization header.
type received struct {
	header   http.Header
	rawQuery string
	body     string
	token    jwt.Token // nil when verification failed
	typ, kid string
	alg      string
	err      error
}

// verifyingUpstream is an internal API that trusts the gateway: it
// verifies every request's bearer token against the gateway's JWKS (fetched
// from jwksURL with jwk.Fetch, as a JWKS client would) with iss and aud
// checked, answers 200 with the token's sub, or 401.
type verifyingUpstream struct {
	*httptest.Server
	jwksURL string
	mu      sync.Mutex
	got     []received
}

func newVerifyingUpstream(t *testing.T) *verifyingUpstream {
	t.Helper()
	u := &verifyingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := received{header: r.Header.Clone(), rawQuery: r.URL.RawQuery, body: string(body)}
		rec.token, rec.typ, rec.alg, rec.kid, rec.err = u.verify(r)
		u.mu.Lock()
		u.got = append(u.got, rec)
		u.mu.Unlock()
		if rec.err != nil {
			http.Error(w, "upstream: "+rec.err.Error(), http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "upstream saw "+rec.token.Subject())
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *verifyingUpstream) verify(r *http.Request) (jwt.Token, string, string, string, error) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, "", "", "", fmt.Errorf("no bearer token")
	}
	set, err := jwk.Fetch(r.Context(), u.jwksURL)
	if err != nil {
		return nil, "", "", "", fmt.Errorf("fetching the gateway's JWKS: %w", err)
	}
	tok, err := jwt.Parse([]byte(raw), jwt.WithKeySet(set), jwt.WithIssuer(phantomIssuer), jwt.WithAudience(phantomAudience))
	if err != nil {
		return nil, "", "", "", err
	}
	msg, err := jws.Parse([]byte(raw))
	if err != nil {
		return nil, "", "", "", err
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	return tok, h.Type(), h.Algorithm().String(), h.KeyID(), nil
}

func (u *verifyingUpstream) take() []received {
	u.mu.Lock()
	defer u.mu.Unlock()
	g := u.got
	u.got = nil
	return g
}

// phantomSite guards reverse_proxy to up with bearer_auth (the given
// validation lines) and upstream_token signing with keyFile.
func phantomSite(validation, keyFile, extra string, up *verifyingUpstream) string {
	return fmt.Sprintf(`	bearer_auth {
%s
		upstream_token {
			signing_key %s
			issuer %s
			audience %s
			jwks_path %s
		}
%s
	}
	reverse_proxy %s`, validation, keyFile, phantomIssuer, phantomAudience, phantomJWKSPath, extra, strings.TrimPrefix(up.URL, "http://"))
}

func introspectionLines(as *testas.Server) string {
	return fmt.Sprintf("\t\tissuer %s\n\t\tintrospect {\n\t\t\tclient_id %s\n\t\t\tclient_secret %s\n\t\t}", as.Issuer(), testas.GatewayID, testas.GatewaySecret)
}

func jwtLines(as *testas.Server) string {
	// zitadel types its access tokens "JWT", not at+jwt.
	return fmt.Sprintf("\t\tissuer %s\n\t\taudience svc-jwt\n\t\tjwt {\n\t\t\ttyp JWT\n\t\t}", as.Issuer())
}

// expectPhantom checks one received request: verified, with the header
// and claims of an RFC 9068 token for the caller, living at most ttl and
// never past callerExp, and without the caller's token anywhere.
func expectPhantom(t *testing.T, rec received, callerToken, sub, clientID, scope, alg string, callerExp time.Time) {
	t.Helper()
	if rec.err != nil {
		t.Fatalf("the upstream could not verify the gateway's token: %v", rec.err)
	}
	tok := rec.token
	if rec.typ != "at+jwt" || rec.alg != alg || rec.kid == "" {
		t.Errorf("header typ %q alg %q kid %q, want at+jwt, %s and a kid", rec.typ, rec.alg, rec.kid, alg)
	}
	pc := tok.PrivateClaims()
	if tok.Subject() != sub || pc["client_id"] != clientID || pc["scope"] != scope || tok.JwtID() == "" {
		t.Errorf("sub %q client_id %v scope %v jti %q, want %s %s %s and a jti", tok.Subject(), pc["client_id"], pc["scope"], tok.JwtID(), sub, clientID, scope)
	}
	iat, exp := tok.IssuedAt(), tok.Expiration()
	if life := exp.Sub(iat); life <= 0 || life > time.Minute {
		t.Errorf("lifetime %v, want at most the default ttl 60s", life)
	}
	if since := time.Since(iat); since < -time.Second || since > 5*time.Second {
		t.Errorf("iat %v is not now", iat)
	}
	if !callerExp.IsZero() && exp.After(callerExp) {
		t.Errorf("exp %v is after the caller token's exp %v", exp, callerExp)
	}
	noCallerToken(t, rec, callerToken)
}

// noCallerToken fails if the caller's token is in any header, the query
// or the body the upstream received, raw or percent-encoded.
func noCallerToken(t *testing.T, rec received, callerToken string) {
	t.Helper()
	forms := []string{callerToken, url.QueryEscape(callerToken)}
	for name, values := range rec.header {
		for _, v := range values {
			for _, f := range forms {
				if strings.Contains(v, f) {
					t.Errorf("the upstream received the caller's token in header %s", name)
				}
			}
		}
	}
	for _, f := range forms {
		if strings.Contains(rec.rawQuery, f) {
			t.Errorf("the upstream received the caller's token in the query")
		}
		if strings.Contains(rec.body, f) {
			t.Errorf("the upstream received the caller's token in the body")
		}
	}
}

// callerExp reads the exp of a JWT without verifying it (the test's own
// knowledge of the caller's token).
func callerExp(t *testing.T, token string) time.Time {
	t.Helper()
	tok, err := jwt.ParseInsecure([]byte(token))
	if err != nil {
		t.Fatal(err)
	}
	return tok.Expiration()
}

// TestUpstreamGetsAGatewayTokenInIntrospectionMode: an opaque token,
// introspected; the upstream gets an RS256 gateway token it verifies
// offline, and never the caller's.
func TestUpstreamGetsAGatewayTokenInIntrospectionMode(t *testing.T) {
	as := testas.Start(t)
	up := newVerifyingUpstream(t)
	tc := startCaddy(t, phantomSite(introspectionLines(as), writeSigningKey(t, "RSA"), "\t\tscopes read", up))
	up.jwksURL = tc.base + phantomJWKSPath
	tok := as.Token(t, "svc-a", "read")
	issued := time.Now()
	for range 3 {
		r := tc.get("/orders", "Bearer "+tok)
		if r.status != 200 || r.body != "upstream saw svc-a" {
			t.Fatalf("got %d %q", r.status, r.body)
		}
	}
	got := up.take()
	if len(got) != 3 {
		t.Fatalf("the upstream received %d requests, want 3", len(got))
	}
	// testas tokens live 5 minutes.
	for _, rec := range got {
		expectPhantom(t, rec, tok, "svc-a", "svc-a", "read", "RS256", issued.Add(5*time.Minute+time.Second))
	}
	if got[0].token.JwtID() != got[2].token.JwtID() {
		t.Errorf("the cached decision's token was signed again within its life")
	}
	if n := as.IntrospectionCalls(); n != 1 {
		t.Errorf("%d introspection calls, want 1", n)
	}
}

// TestUpstreamGetsAGatewayTokenInJWTMode: a JWT access token verified
// locally; the gateway's ES256 token ends when the caller's does, not a
// ttl later.
func TestUpstreamGetsAGatewayTokenInJWTMode(t *testing.T) {
	as := testas.Start(t, testas.WithTokenLifetime(20*time.Second))
	up := newVerifyingUpstream(t)
	tc := startCaddy(t, phantomSite(jwtLines(as), writeSigningKey(t, "EC"), "", up))
	up.jwksURL = tc.base + phantomJWKSPath
	tok := as.Token(t, "svc-jwt", "read", "write")
	if r := tc.get("/", "Bearer "+tok); r.status != 200 || r.body != "upstream saw svc-jwt" {
		t.Fatalf("got %d %q", r.status, r.body)
	}
	got := up.take()
	if len(got) != 1 {
		t.Fatalf("the upstream received %d requests", len(got))
	}
	exp := callerExp(t, tok)
	expectPhantom(t, got[0], tok, "svc-jwt", "svc-jwt", "read write", "ES256", exp)
	if !got[0].token.Expiration().Equal(exp) {
		t.Errorf("exp %v, want the caller token's exp %v (sooner than iat + 60s)", got[0].token.Expiration(), exp)
	}
}

// TestUpstreamTokenCarriesStepUpAndNamedClaims: acr and auth_time, and
// the claims named by claims, arrive as the caller's token had them; other
// claims of the caller's token do not.
func TestUpstreamTokenCarriesStepUpAndNamedClaims(t *testing.T) {
	up := newVerifyingUpstream(t)
	validation := fmt.Sprintf("\t\tissuer %s\n\t\taudience %s\n\t\tjwt {\n\t\t\tjwks_file %s\n\t\t}", benchIssuer, benchAudience, benchDemoFile(t, "demo-jwks.json"))
	site := strings.Replace(phantomSite(validation, writeSigningKey(t, "Ed25519"), "", up), "\t\t\tjwks_path", "\t\t\tclaims tenant roles\n\t\t\tjwks_path", 1)
	tc := startCaddy(t, site)
	up.jwksURL = tc.base + phantomJWKSPath

	raw, err := os.ReadFile(benchDemoFile(t, "demo-private.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwk.ParseKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	authTime := now.Add(-time.Minute).Unix()
	caller, err := jwt.NewBuilder().Issuer(benchIssuer).Audience([]string{benchAudience}).Subject("alice").
		IssuedAt(now).Expiration(now.Add(time.Hour)).JwtID("caller-jti").
		Claim("client_id", "web-app").Claim("scope", "orders:read").Claim("acr", "phr").Claim("auth_time", authTime).
		Claim("tenant", "acme").Claim("roles", []string{"reader", "auditor"}).Claim("internal_note", "not for upstreams").Build()
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.TypeKey, "at+jwt")
	signed, err := jwt.Sign(caller, jwt.WithKey(key.Algorithm(), key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	if r := tc.get("/", "Bearer "+string(signed)); r.status != 200 || r.body != "upstream saw alice" {
		t.Fatalf("got %d %q", r.status, r.body)
	}
	got := up.take()
	if len(got) != 1 {
		t.Fatalf("the upstream received %d requests", len(got))
	}
	expectPhantom(t, got[0], string(signed), "alice", "web-app", "orders:read", "EdDSA", now.Add(time.Hour))
	pc := got[0].token.PrivateClaims()
	roles, _ := json.Marshal(pc["roles"])
	if pc["acr"] != "phr" || pc["auth_time"] != float64(authTime) || pc["tenant"] != "acme" || string(roles) != `["reader","auditor"]` {
		t.Errorf("acr %v auth_time %v tenant %v roles %s", pc["acr"], pc["auth_time"], pc["tenant"], roles)
	}
	for _, absent := range []string{"internal_note", "cnf", "nbf"} {
		if v, ok := pc[absent]; ok {
			t.Errorf("%s = %v reached the upstream", absent, v)
		}
	}
	if got[0].token.JwtID() == "caller-jti" {
		t.Error("the caller's jti was reused")
	}
}

// TestCallersTokenNeverReachesTheUpstream: a token sent in the query or a
// form body is taken out (only its pair; the rest arrives as sent), and the
// upstream gets the gateway's token in the header instead.
func TestCallersTokenNeverReachesTheUpstream(t *testing.T) {
	as := testas.Start(t)
	up := newVerifyingUpstream(t)
	tc := startCaddy(t, phantomSite(introspectionLines(as), writeSigningKey(t, "Ed25519"), "\t\tallow_query_token\n\t\tallow_form_token", up))
	up.jwksURL = tc.base + phantomJWKSPath
	tok := as.Token(t, "svc-b", "read")
	q := url.QueryEscape(tok)
	cases := []struct {
		name, method, path, auth, body string
		wantQuery, wantBody            string
	}{
		{"header", "GET", "/items?x=1", "Bearer " + tok, "", "x=1", ""},
		{"query", "GET", "/items?a=1&access_token=" + q + "&b=%7E", "", "", "a=1&b=%7E", ""},
		{"form", "POST", "/items?z=9", "", "k=v&access_token=" + q + "&n=2", "z=9", "k=v&n=2"},
		{"form with only the token", "POST", "/items", "", "access_token=" + q, "", ""},
		// A non-Bearer Authorization beside a query token is replaced too.
		{"query beside Basic", "GET", "/items?access_token=" + q, "Basic Zm9vOmJhcg==", "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{"Authorization": c.auth}
			if c.method == "POST" {
				hdr["Content-Type"] = "application/x-www-form-urlencoded"
			}
			r := tc.do(c.method, c.path, hdr, []byte(c.body))
			if r.status != 200 {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			got := up.take()
			if len(got) != 1 {
				t.Fatalf("the upstream received %d requests", len(got))
			}
			expectPhantom(t, got[0], tok, "svc-b", "svc-b", "read", "EdDSA", time.Now().Add(5*time.Minute+time.Second))
			if got[0].rawQuery != c.wantQuery || got[0].body != c.wantBody {
				// Failure messages show <token>, not the token.
				redact := strings.NewReplacer(q, "<token>", tok, "<token>").Replace
				t.Errorf("upstream query %q body %q, want %q %q", redact(got[0].rawQuery), redact(got[0].body), c.wantQuery, c.wantBody)
			}
			if a := got[0].header.Values("Authorization"); len(a) != 1 {
				t.Errorf("%d Authorization headers upstream", len(a))
			}
		})
	}
}

// TestRejectedRequestsNeverReachTheUpstream: with upstream_token, every
// rejection is still the gateway's own RFC 6750 answer, and the upstream
// sees nothing — not even with a client-made JWT in the gateway's name.
func TestRejectedRequestsNeverReachTheUpstream(t *testing.T) {
	as := testas.Start(t)
	up := newVerifyingUpstream(t)
	tc := startCaddy(t, phantomSite(introspectionLines(as), writeSigningKey(t, "EC"), "\t\tscopes write", up))
	up.jwksURL = tc.base + phantomJWKSPath
	ok := as.Token(t, "svc-a", "read", "write")
	if r := tc.get("/", "Bearer "+ok); r.status != 200 {
		t.Fatalf("a good token: %d %q", r.status, r.body)
	}
	gatewayToken := up.take()[0].header.Get("Authorization")
	cases := []struct {
		name, auth string
		status     int
	}{
		{"no token", "", 401},
		{"malformed", "Bearer a b", 400},
		{"unknown token", "Bearer not-a-token-anyone-issued", 401},
		{"scope missing", "Bearer " + as.Token(t, "svc-b", "read"), 403},
		// The gateway's own token is for the upstream, not for the gateway.
		{"a replayed gateway token", gatewayToken, 401},
	}
	for _, c := range cases {
		r := tc.get("/", c.auth)
		if r.status != c.status {
			t.Errorf("%s: got %d %q, want %d", c.name, r.status, r.body, c.status)
		}
	}
	if got := up.take(); len(got) != 0 {
		t.Errorf("the upstream received %d rejected requests", len(got))
	}
}

// TestJWKSIsServedWithoutATokenWithPublicMembersOnly: GET and HEAD, no
// token needed, cacheable, the signing and the next key, and no private
// member for any key type; other methods are 405.
func TestJWKSIsServedWithoutATokenWithPublicMembersOnly(t *testing.T) {
	as := testas.Start(t)
	up := newVerifyingUpstream(t)
	kinds := []string{"RSA", "EC", "Ed25519"}
	files := map[string]string{}
	for _, k := range kinds {
		files[k] = writeSigningKey(t, k)
	}
	// One Caddy, one route per key type: each bearer_auth serves its
	// own JWKS under its route's path.
	var site strings.Builder
	for i, kind := range kinds {
		next := kinds[(i+1)%len(kinds)]
		block := phantomSite(introspectionLines(as), files[kind], "", up)
		block = strings.Replace(block, "\t\t\tjwks_path "+phantomJWKSPath, "\t\t\tnext_signing_key "+files[next]+"\n\t\t\tjwks_path /"+kind+phantomJWKSPath, 1)
		fmt.Fprintf(&site, "\thandle /%s/* {\n%s\n\t}\n", kind, block)
	}
	tc := startCaddy(t, site.String())
	for i, kind := range kinds {
		next := kinds[(i+1)%len(kinds)]
		path := "/" + kind + phantomJWKSPath
		r := tc.get(path, "")
		if r.status != 200 {
			t.Fatalf("%s: GET: %d %q", kind, r.status, r.body)
		}
		if cc, ct := r.header.Get("Cache-Control"), r.header.Get("Content-Type"); cc != "public, max-age=300" || ct != "application/jwk-set+json" {
			t.Errorf("%s: Cache-Control %q, Content-Type %q", kind, cc, ct)
		}
		var set struct {
			Keys []map[string]any `json:"keys"`
		}
		if err := json.Unmarshal([]byte(r.body), &set); err != nil || len(set.Keys) != 2 {
			t.Fatalf("%s: JWKS %q: %v", kind, r.body, err)
		}
		for j, k := range set.Keys {
			for _, member := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
				if _, ok := k[member]; ok {
					t.Errorf("%s: key %d publishes the private member %q", kind, j, member)
				}
			}
			if k["kid"] == nil || k["alg"] == nil || k["use"] != "sig" {
				t.Errorf("%s: key %d lacks kid, alg or use: %v", kind, j, k)
			}
		}
		wantKty := map[string]string{"RSA": "RSA", "EC": "EC", "Ed25519": "OKP"}
		if set.Keys[0]["kty"] != wantKty[kind] || set.Keys[1]["kty"] != wantKty[next] {
			t.Errorf("%s: key types %v %v, want the signing key's, then the next key's", kind, set.Keys[0]["kty"], set.Keys[1]["kty"])
		}
		head := tc.do(http.MethodHead, path, nil, nil)
		if head.status != 200 || head.body != "" || head.header.Get("Content-Length") != fmt.Sprint(len(r.body)) {
			t.Errorf("%s: HEAD: %d, %d bytes, Content-Length %q", kind, head.status, len(head.body), head.header.Get("Content-Length"))
		}
		if post := tc.do(http.MethodPost, path, nil, nil); post.status != 405 || post.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: POST: %d, Allow %q", kind, post.status, post.header.Get("Allow"))
		}
	}
	if got := up.take(); len(got) != 0 {
		t.Errorf("JWKS requests reached the upstream: %d", len(got))
	}
}

// phantomBenchHandler is the quick start's handler (local JWKS file, ES256
// tokens) with upstream_token signing with keyFile, provisioned in-process.
func phantomBenchHandler(tb testing.TB, keyFile string) *Handler {
	tb.Helper()
	return provisionBench(tb, &Handler{
		Issuer:   benchIssuer,
		Audience: []string{benchAudience},
		Scopes:   []string{"read"},
		JWT:      &JWTConfig{JWKSFile: benchDemoFile(tb, "demo-jwks.json")},
		UpstreamToken: &UpstreamTokenConfig{SigningKey: keyFile, Issuer: phantomIssuer,
			Audience: []string{phantomAudience}, JWKSPath: phantomJWKSPath},
	})
}

// TestUpstreamTokenIsSignedOncePerDecision counts signatures: many
// requests, concurrent and sequential, with one token share one signature
// (and one upstream token); a second caller token is a second decision.
func TestUpstreamTokenIsSignedOncePerDecision(t *testing.T) {
	h := phantomBenchHandler(t, writeSigningKey(t, "RSA"))
	callers := []string{benchMint(t, "alice"), benchMint(t, "bob")}
	var mu sync.Mutex
	seen := map[string]map[string]int{} // caller sub -> upstream Authorization -> count
	next := func(sub string) *okNextFunc {
		return &okNextFunc{fn: func(r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if seen[sub] == nil {
				seen[sub] = map[string]int{}
			}
			seen[sub][r.Header.Get("Authorization")]++
		}}
	}
	const workers, perWorker = 8, 50
	for i, caller := range callers {
		sub := []string{"alice", "bob"}[i]
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range perWorker {
					w := httptest.NewRecorder()
					if err := serveBench(h, benchRequest(caller), w, next(sub)); err != nil || w.Body.Len() != 0 {
						t.Errorf("rejected: %v %s", err, w.Body)
						return
					}
				}
			})
		}
		wg.Wait()
		if n := h.upstream.Signatures(); n != uint64(i+1) {
			t.Errorf("after %d requests with %d caller token(s): %d signatures, want %d", workers*perWorker, i+1, n, i+1)
		}
	}
	for sub, byToken := range seen {
		if len(byToken) != 1 {
			t.Errorf("%s: the upstream got %d different tokens, want 1", sub, len(byToken))
		}
		for auth, n := range byToken {
			if !strings.HasPrefix(auth, "Bearer ey") || n != workers*perWorker {
				t.Errorf("%s: %d requests with %.20q…", sub, n, auth)
			}
		}
	}
}

type okNextFunc struct{ fn func(*http.Request) }

func (o *okNextFunc) ServeHTTP(_ http.ResponseWriter, r *http.Request) error { o.fn(r); return nil }

// BenchmarkHandlerWarmUpstreamToken is the warm path (decision cached)
// without and with upstream_token, on the same harness: the difference is
// what the phantom token costs per request once signed. signatures/op shows
// that signing is not per request (a handful in total, whatever b.N).
//
//	go test -run '^$' -bench 'WarmUpstreamToken' -benchmem ./caddymodule/
func BenchmarkHandlerWarmUpstreamToken(b *testing.B) {
	caller := benchMint(b, "demo-user")
	cases := []struct {
		name string
		h    func(b *testing.B) *Handler
	}{
		{"without", func(b *testing.B) *Handler {
			return provisionBench(b, &Handler{Issuer: benchIssuer, Audience: []string{benchAudience}, Scopes: []string{"read"},
				JWT: &JWTConfig{JWKSFile: benchDemoFile(b, "demo-jwks.json")}, StripAuthorization: true})
		}},
		{"with_RS256", func(b *testing.B) *Handler { return phantomBenchHandler(b, writeSigningKey(b, "RSA")) }},
		{"with_ES256", func(b *testing.B) *Handler { return phantomBenchHandler(b, writeSigningKey(b, "EC")) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			h := c.h(b)
			r := benchRequest(caller)
			// The handler replaces the header on the request it is given
			// (a shallow copy shares the map): put the caller's back each
			// time, without allocating.
			auth := []string{"Bearer " + caller}
			w, next := httptest.NewRecorder(), &okNext{}
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				r.Header["Authorization"] = auth
				_ = serveBench(h, r, w, next)
			}
			reportCPU(b, cpu0)
			if next.n != b.N || w.Body.Len() != 0 {
				b.Fatalf("%d of %d let through: %s", next.n, b.N, w.Body)
			}
			if h.upstream != nil {
				b.ReportMetric(float64(h.upstream.Signatures())/float64(b.N), "signatures/op")
			}
		})
	}
}

// TestUpstreamTokenCaddyfile: the block parses into the JSON names, and
// its mistakes are refused with the sub-directive named.
func TestUpstreamTokenCaddyfile(t *testing.T) {
	var h Handler
	d := caddyfile.NewTestDispenser(`bearer_auth {
		issuer https://as.example.com
		upstream_token {
			signing_key /keys/gw.pem
			next_signing_key /keys/gw-next.pem
			issuer https://gateway.example.com
			audience orders billing
			ttl 2m
			jwks_path /.well-known/jwks.json
			claims tenant roles
		}
	}`)
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h.UpstreamToken)
	want := `{"signing_key":"/keys/gw.pem","next_signing_key":"/keys/gw-next.pem","issuer":"https://gateway.example.com","audience":["orders","billing"],"ttl":120000000000,"jwks_path":"/.well-known/jwks.json","claims":["tenant","roles"]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	bad := []struct{ block, want string }{
		{"upstream_token {\n issuer https://gw\n audience a\n}", "upstream_token needs signing_key"},
		{"upstream_token {\n signing_key k\n signing_key k2\n}", "signing_key already specified"},
		{"upstream_token {\n signing_key k\n lifetime 1m\n}", "unrecognized upstream_token subdirective 'lifetime'"},
		{"upstream_token {\n signing_key k\n ttl soon\n}", "invalid ttl duration 'soon'"},
		{"upstream_token x {\n signing_key k\n}", "wrong argument count"},
		{"upstream_token {\n signing_key k\n}\nupstream_token {\n signing_key k\n}", "upstream_token block already specified"},
	}
	for _, c := range bad {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("bearer_auth {\n" + c.block + "\n}"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want %q", c.block, err, c.want)
		}
	}

	// Validate (no I/O) names the setting; the route's issuer cannot be
	// the gateway's.
	v := Handler{Issuer: "https://as.example.com", JWT: &JWTConfig{JWKSFile: "x"}, Audience: []string{"api"},
		UpstreamToken: &UpstreamTokenConfig{SigningKey: "/k.pem", Issuer: "https://as.example.com", Audience: []string{"orders"}}}
	if err := v.Validate(); err == nil || !strings.Contains(err.Error(), "bearer_auth: upstream_token: issuer https://as.example.com is the issuer of the tokens this route accepts") {
		t.Errorf("Validate: %v", err)
	}
	v.UpstreamToken.Issuer, v.UpstreamToken.Audience = "https://gateway.example.com", nil
	if err := v.Validate(); err == nil || !strings.Contains(err.Error(), "upstream_token: audience is required") {
		t.Errorf("Validate: %v", err)
	}
}

// TestDoctorShowsUpstreamTokenAndASample: the doctor reports the settings
// in force and, with --token, the header and claims the upstream would get
// — never the gateway's token or its signature.
func TestDoctorShowsUpstreamTokenAndASample(t *testing.T) {
	as := testas.Start(t)
	key := writeSigningKey(t, "EC")
	cf := fmt.Sprintf(`http://127.0.0.1:1 {
	route /api/* {
		bearer_auth {
%s
			upstream_token {
				signing_key %s
				issuer %s
				audience %s
				jwks_path %s
				claims tenant
			}
		}
		respond ok
	}
}`, introspectionLines(as), key, phantomIssuer, phantomAudience, phantomJWKSPath)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil {
		t.Fatal(err)
	}
	tok := as.Token(t, "svc-a", "read")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep := runDoctor(ctx, diagnose.NewReport("Caddyfile", "caddyfile"), cfg, diagnose.Options{Token: tok, HaveToken: true})
	var text bytes.Buffer
	rep.WriteText(&text)
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	checks := map[string]*diagnose.Check{}
	for _, c := range rep.Blocks[0].Checks {
		checks[c.Name] = c
	}
	settings, sample := checks[diagnose.CheckUpstreamToken], checks[diagnose.CheckUpstreamTokenSample]
	if settings == nil || sample == nil {
		t.Fatalf("no upstream token checks:\n%s", out)
	}
	// The JWKS path is outside the route's /api/*: the JWKS would never
	// be served.
	if settings.Status != diagnose.StatusWarn || !strings.Contains(settings.Detail, "signs ES256 with kid ") ||
		!strings.Contains(settings.Detail, "iss "+phantomIssuer+", aud "+phantomAudience+", ttl 1m0s; copies acr auth_time cnf tenant") ||
		!strings.Contains(settings.Hint, "jwks_path within the block's paths") {
		t.Errorf("settings check: %s %q (hint %q)", settings.Status, settings.Detail, settings.Hint)
	}
	if sample.Status != diagnose.StatusPass || !strings.Contains(sample.Detail, "typ at+jwt, alg ES256") ||
		!strings.Contains(sample.Detail, "sub svc-a, client_id svc-a, scope read; expires in 1m0s") {
		t.Errorf("sample check: %s %q", sample.Status, sample.Detail)
	}
	claims, _ := sample.Data["claims"].(map[string]any)
	if claims["aud"] != phantomAudience || claims["iss"] != phantomIssuer || claims["jti"] == nil {
		t.Errorf("sample claims %v", claims)
	}
	for _, doc := range []string{out, js.String()} {
		if strings.Contains(doc, tok) {
			t.Error("the report contains the caller's token")
		}
		if strings.Contains(doc, "eyJ") {
			t.Errorf("the report contains a JWT (the sample's compact form):\n%s", doc)
		}
	}
}
