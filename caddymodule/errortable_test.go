package caddymodule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

const (
	demoIssuer   = "https://demo.tokengate.test"
	demoAudience = "demo-api"
	demoKey      = "../demo/demo-private.jwk"
)

func mint(t *testing.T, key, iss, aud, scope, clientID string, ttl time.Duration, now time.Time) string {
	t.Helper()
	tok, err := mintToken(key, iss, []string{aud}, scope, "user-1", clientID, ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// otherKey writes a fresh ES256 private JWK that the gateway does not trust.
func otherKey(t *testing.T, kid string) string {
	t.Helper()
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := jwk.FromRaw(pk)
	_ = k.Set(jwk.KeyIDKey, kid)
	_ = k.Set(jwk.AlgorithmKey, jwa.ES256)
	b, _ := json.Marshal(k)
	p := filepath.Join(t.TempDir(), "other.jwk")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func demoSite(extra string) string {
	return fmt.Sprintf(`	bearer_auth {
		issuer %s
		audience %s
		scopes read
		clients demo-client svc-allowed
		allow_query_token
		jwt {
			jwks_file ../demo/demo-jwks.json
		}
%s
	}
	respond "ok {http.auth.user.id}"`, demoIssuer, demoAudience, extra)
}

// TestErrorTable checks every row of DESIGN.md's error table with the exact
// status, WWW-Authenticate header and JSON body a client sees.
func TestErrorTable(t *testing.T) {
	t.Parallel()
	tc := startCaddy(t, demoSite(""))
	now := time.Now()
	good := mint(t, demoKey, demoIssuer, demoAudience, "read write", "demo-client", time.Hour, now)
	const realm = `Bearer realm="tokengate"`
	invalidRequest := func(desc string) (string, string) {
		return realm + `, error="invalid_request", error_description="` + desc + `"`,
			`{"error":"invalid_request","error_description":"` + desc + `"}`
	}
	invalidToken := func(desc string) (string, string) {
		return realm + `, error="invalid_token", error_description="` + desc + `"`,
			`{"error":"invalid_token","error_description":"` + desc + `"}`
	}
	type row struct {
		name    string
		path    string
		headers map[string]string
		status  int
		www     string
		body    string
	}
	rows := []row{
		{name: "no credentials", path: "/", status: 401, www: realm, body: `{"error_description":"bearer token required"}`},
		{name: "another scheme is no bearer credentials", path: "/", headers: map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, status: 401, www: realm, body: `{"error_description":"bearer token required"}`},
		{name: "good token", path: "/", headers: map[string]string{"Authorization": "Bearer " + good}, status: 200, body: "ok user-1"},
		{name: "scheme is case-insensitive", path: "/", headers: map[string]string{"Authorization": "bEaReR " + good}, status: 200, body: "ok user-1"},
	}
	add := func(name, path string, headers map[string]string, status int, www, body string) {
		rows = append(rows, row{name, path, headers, status, www, body})
	}
	w, b := invalidRequest("the Bearer scheme carries no token")
	add("Bearer with no token", "/", map[string]string{"Authorization": "Bearer"}, 400, w, b)
	add("Bearer with only spaces", "/", map[string]string{"Authorization": "Bearer   "}, 400, w, b)
	w, b = invalidRequest("the Authorization header carries more than one token")
	add("Bearer a b", "/", map[string]string{"Authorization": "Bearer a b"}, 400, w, b)
	w, b = invalidRequest("the token contains characters outside the b64token set")
	add("non-b64token characters", "/", map[string]string{"Authorization": "Bearer abc$def"}, 400, w, b)
	w, b = invalidRequest("the token was sent in more than one way")
	add("token in header and query", "/?access_token="+good, map[string]string{"Authorization": "Bearer " + good}, 400, w, b)
	w, b = invalidRequest("the Authorization header is too long")
	add("over-long header", "/", map[string]string{"Authorization": "Bearer " + strings.Repeat("a", 9000)}, 400, w, b)

	w, b = invalidToken("token expired")
	add("expired", "/", map[string]string{"Authorization": "Bearer " + mint(t, demoKey, demoIssuer, demoAudience, "read", "demo-client", time.Minute, now.Add(-time.Hour))}, 401, w, b)
	w, b = invalidToken("unknown signing key")
	add("signed by an unknown key", "/", map[string]string{"Authorization": "Bearer " + mint(t, otherKey(t, "intruder"), demoIssuer, demoAudience, "read", "demo-client", time.Hour, now)}, 401, w, b)
	w, b = invalidToken("bad signature")
	add("bad signature with the trusted kid", "/", map[string]string{"Authorization": "Bearer " + mint(t, otherKey(t, "tokengate-demo"), demoIssuer, demoAudience, "read", "demo-client", time.Hour, now)}, 401, w, b)
	w, b = invalidToken("issuer mismatch")
	add("wrong issuer", "/", map[string]string{"Authorization": "Bearer " + mint(t, demoKey, "https://evil.test", demoAudience, "read", "demo-client", time.Hour, now)}, 401, w, b)
	w, b = invalidToken("audience mismatch")
	add("wrong audience", "/", map[string]string{"Authorization": "Bearer " + mint(t, demoKey, demoIssuer, "other-api", "read", "demo-client", time.Hour, now)}, 401, w, b)
	w, b = invalidToken("the token is not a JWT access token")
	add("opaque token with jwt only", "/", map[string]string{"Authorization": "Bearer opaque-token"}, 401, w, b)

	add("valid token lacking a required scope", "/", map[string]string{"Authorization": "Bearer " + mint(t, demoKey, demoIssuer, demoAudience, "write", "demo-client", time.Hour, now)}, 403,
		realm+`, error="insufficient_scope", error_description="the token lacks a required scope", scope="read"`,
		`{"error":"insufficient_scope","error_description":"the token lacks a required scope","scope":"read"}`)
	add("valid token issued to another client", "/", map[string]string{"Authorization": "Bearer " + mint(t, demoKey, demoIssuer, demoAudience, "read", "other-client", time.Hour, now)}, 403,
		realm+`, error="unauthorized_client", error_description="the client this token was issued to may not use this API"`,
		`{"error":"unauthorized_client","error_description":"the client this token was issued to may not use this API"}`)

	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			res := tc.do("GET", r.path, r.headers, nil)
			res.expect(t, r.status, r.www, r.body)
			if r.status >= 400 {
				if cc := res.header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", cc)
				}
				if ct := res.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
			}
		})
	}

	t.Run("two Authorization headers", func(t *testing.T) {
		res := tc.doMulti("/", "Authorization", []string{"Bearer " + good, "Bearer " + good})
		w, b := invalidRequest("more than one Authorization header")
		res.expect(t, 400, w, b)
	})
}

func TestAlgorithmNotInAllowlistIsInvalidToken(t *testing.T) {
	t.Parallel()
	tc := startCaddy(t, strings.Replace(demoSite(""), "jwks_file ../demo/demo-jwks.json", "jwks_file ../demo/demo-jwks.json\n\t\t\talgorithms RS256", 1))
	tok := mint(t, demoKey, demoIssuer, demoAudience, "read", "demo-client", time.Hour, time.Now())
	tc.get("/", "Bearer "+tok).expect(t, 401,
		`Bearer realm="tokengate", error="invalid_token", error_description="algorithm not allowed"`,
		`{"error":"invalid_token","error_description":"algorithm not allowed"}`)
}

func TestUnreachableJWKSGives503NotInvalidToken(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String() + "/jwks"
	l.Close()
	tc := startCaddy(t, fmt.Sprintf(`	bearer_auth {
		issuer %s
		audience %s
		retry_after 30s
		jwt {
			jwks_url %s
			allow_start_without_keys
		}
	}
	respond "ok"`, demoIssuer, demoAudience, dead))
	tok := mint(t, demoKey, demoIssuer, demoAudience, "read", "demo-client", time.Hour, time.Now())
	r := tc.get("/", "Bearer "+tok)
	if r.status != 503 || r.header.Get("Retry-After") != "30" || r.header.Get("WWW-Authenticate") != "" {
		t.Fatalf("got %d Retry-After=%q WWW-Authenticate=%q body=%s", r.status, r.header.Get("Retry-After"), r.header.Get("WWW-Authenticate"), r.body)
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || body["error"] != "temporarily_unavailable" {
		t.Fatalf("body %q", r.body)
	}
}

func TestUnreachableJWKSFailsTheConfigLoadByDefault(t *testing.T) {
	t.Parallel()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String() + "/jwks"
	l.Close()
	tc := startCaddy(t, `	respond "placeholder"`)
	err := tc.tryLoad(fmt.Sprintf(`	bearer_auth {
		issuer %s
		audience %s
		jwt {
			jwks_url %s
		}
	}`, demoIssuer, demoAudience, dead))
	if err == nil || !strings.Contains(err.Error(), "allow_start_without_keys") || !strings.Contains(err.Error(), dead) {
		t.Fatalf("err = %v", err)
	}
}

// publicJWKS returns a JWKS holding the public half of a private JWK file.
func publicJWKS(t *testing.T, privateFile string) string {
	t.Helper()
	b, err := os.ReadFile(privateFile)
	if err != nil {
		t.Fatal(err)
	}
	k, err := jwk.ParseKey(b)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	out, _ := json.Marshal(set)
	return string(out)
}

func TestTypOptionAddsToTheStandardAccessTokenType(t *testing.T) {
	t.Parallel()
	tc := startCaddy(t, strings.Replace(demoSite(""), "jwks_file ../demo/demo-jwks.json", "jwks_file ../demo/demo-jwks.json\n\t\t\ttyp JWT", 1))
	tok := mint(t, demoKey, demoIssuer, demoAudience, "read", "demo-client", time.Hour, time.Now())
	if r := tc.get("/", "Bearer "+tok); r.status != 200 {
		t.Fatalf("at+jwt token with typ JWT also accepted: %d %s", r.status, r.header.Get("WWW-Authenticate"))
	}
}
