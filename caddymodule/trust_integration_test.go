package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testas"
)

// Several trusted issuers on one route, against real authorization servers:
// every testas.Start is its own server with its own RSA keys.

// partnerApp is a client of the second server whose JWTs are for the API's
// name at that server, api-b.
var partnerApp = testas.Client{ID: "partner-app", Secret: "partner-secret", Scopes: []string{"read"},
	JWTAccessTokens: true, Audience: []string{"api-b"}}

// opaqueApp is a client of the first server with opaque tokens for the API.
var opaqueApp = testas.Client{ID: "opaque-app", Secret: "opaque-secret", Scopes: []string{"read"},
	Audience: []string{"svc-jwt"}}

// trustSite is a route whose own issuer a verifies JWTs locally and also
// introspects (so that a token wrongly handed to a would show up as an
// introspection call), and which trusts each of others for JWTs with
// audience api-b.
func trustSite(a *testas.Server, others ...*testas.Server) string {
	var trust strings.Builder
	for _, o := range others {
		fmt.Fprintf(&trust, "\t\ttrust %s {\n\t\t\tjwt {\n\t\t\t\ttyp JWT\n\t\t\t}\n\t\t\taudience api-b\n\t\t}\n", o.Issuer())
	}
	return fmt.Sprintf(`	bearer_auth {
		issuer %s
		audience svc-jwt
		scopes read
		jwt {
			typ JWT
		}
		introspect {
			client_id %s
			client_secret %s
		}
%s	}
	respond "ok {http.auth.user.id}"`, a.Issuer(), testas.GatewayID, testas.GatewaySecret, trust.String())
}

// calls are the requests a server received on the paths a gateway uses.
func calls(as *testas.Server) map[string]int {
	return map[string]int{"discovery": as.Requests(as.DiscoveryPath()), "jwks": as.JWKSCalls(),
		"introspection": as.IntrospectionCalls(), "token": as.TokenCalls()}
}

func noCalls(t *testing.T, name string, as *testas.Server) {
	t.Helper()
	for path, n := range calls(as) {
		if n != 0 {
			t.Errorf("%s received %d %s requests, want none", name, n, path)
		}
	}
}

// accessClaims are the claims of a good access token of iss for aud.
func accessClaims(iss, aud, sub string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": iss, "aud": aud, "sub": sub, "client_id": sub, "scope": "read",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
}

func TestEachTrustedIssuerAcceptsItsOwnTokens(t *testing.T) {
	a := testas.Start(t, testas.WithClients(opaqueApp, testas.Client{ID: "a-for-api-b", Secret: "s",
		Scopes: []string{"read"}, JWTAccessTokens: true, Audience: []string{"api-b"}}))
	b := testas.Start(t, testas.WithClients(partnerApp))
	tc := startCaddy(t, trustSite(a, b))
	a.ResetCounts()
	b.ResetCounts()

	tc.get("/", "Bearer "+a.Token(t, "svc-jwt", "read")).expect(t, 200, "", "ok svc-jwt")
	tc.get("/", "Bearer "+b.Token(t, "partner-app", "read")).expect(t, 200, "", "ok partner-app")
	// An opaque token carries no iss: the first issuer with introspect
	// (the route's own) judges it.
	tc.get("/", "Bearer "+a.Token(t, "opaque-app", "read")).expect(t, 200, "", "ok opaque-app")
	if n := a.IntrospectionCalls(); n != 1 {
		t.Errorf("introspection calls at A = %d, want 1 (the opaque token; JWTs are verified locally)", n)
	}
	// B has no introspection here, so its opaque tokens are A's to judge:
	// A does not know them.
	tc.get("/", "Bearer "+b.Token(t, "svc-a", "read")).expect(t, 401,
		`Bearer realm="tokengate", error="invalid_token", error_description="the token is not active (expired, revoked, or unknown to the authorization server)"`,
		`{"error":"invalid_token","error_description":"the token is not active (expired, revoked, or unknown to the authorization server)"}`)

	// Each issuer's audience: the API is svc-jwt at A and api-b at B, and a
	// token for the other name is refused by the issuer that signed it.
	aud := `Bearer realm="tokengate", error="invalid_token", error_description="audience mismatch"`
	audBody := `{"error":"invalid_token","error_description":"audience mismatch"}`
	tc.get("/", "Bearer "+a.Token(t, "a-for-api-b", "read")).expect(t, 401, aud, audBody)
	tc.get("/", "Bearer "+b.Token(t, "svc-jwt", "read")).expect(t, 401, aud, audBody)

	if calls(a)["jwks"] != 0 || calls(b)["jwks"] != 0 || b.IntrospectionCalls() != 0 {
		t.Errorf("after the load-time fetches: A %v, B %v; want no JWKS fetch and nothing introspected at B", calls(a), calls(b))
	}
}

// The attack trust must not open: one trusted issuer (say, a partner's IdP)
// signs a token that claims to come from another. It is checked with the
// keys of the issuer it names, and only those.
func TestTokenNamingOneIssuerSignedByAnotherIsRefused(t *testing.T) {
	a := testas.Start(t)
	b := testas.Start(t, testas.WithClients(partnerApp))
	tc := startCaddy(t, trustSite(a, b))
	a.ResetCounts()

	claims := accessClaims(b.Issuer(), "api-b", "admin")
	// The claims themselves are good: signed by B they pass.
	tc.get("/", "Bearer "+b.SignToken(t, "", claims)).expect(t, 200, "", "ok admin")

	// A's key under A's kid: B has no such key.
	tc.get("/", "Bearer "+a.SignToken(t, "", claims)).expect(t, 401,
		`Bearer realm="tokengate", error="invalid_token", error_description="unknown signing key"`,
		`{"error":"invalid_token","error_description":"unknown signing key"}`)
	// A's key under B's kid: B's key does not verify A's signature.
	tc.get("/", "Bearer "+a.SignToken(t, b.KeyID(), claims)).expect(t, 401,
		`Bearer realm="tokengate", error="invalid_token", error_description="bad signature"`,
		`{"error":"invalid_token","error_description":"bad signature"}`)
	// And the other way round: B's key cannot speak for the route's own
	// issuer either.
	tc.get("/", "Bearer "+b.SignToken(t, a.KeyID(), accessClaims(a.Issuer(), "svc-jwt", "admin"))).expect(t, 401,
		`Bearer realm="tokengate", error="invalid_token", error_description="bad signature"`,
		`{"error":"invalid_token","error_description":"bad signature"}`)

	if n := a.IntrospectionCalls() + b.IntrospectionCalls(); n != 0 {
		t.Errorf("%d introspection calls for forged JWTs", n)
	}
}

// A JWT of an issuer the route does not trust is refused before any
// validator sees it: no key set refreshes, no introspection endpoint is
// asked — not even the route's own, although it introspects and, alone,
// would introspect a foreign JWT.
func TestUntrustedIssuerIsRefusedWithoutCallingAnyServer(t *testing.T) {
	a := testas.Start(t)
	b := testas.Start(t, testas.WithClients(partnerApp))
	c := testas.Start(t) // a real server the route does not trust
	tc := startCaddy(t, trustSite(a, b))
	a.ResetCounts()
	b.ResetCounts()

	want := `Bearer realm="tokengate", error="invalid_token", error_description="issuer not trusted"`
	body := `{"error":"invalid_token","error_description":"issuer not trusted"}`
	for name, tok := range map[string]string{
		"C's own token":                      c.Token(t, "svc-jwt", "read"),
		"C's iss signed with A's key":        a.SignToken(t, "", accessClaims(c.Issuer(), "svc-jwt", "admin")),
		"B's iss with a trailing slash":      b.SignToken(t, "", accessClaims(b.Issuer()+"/", "api-b", "admin")),
		"no iss, A's key":                    a.SignToken(t, "", map[string]any{"aud": "svc-jwt", "sub": "admin", "exp": time.Now().Add(time.Minute).Unix()}),
		"A's iss in another case, A's key":   a.SignToken(t, "", accessClaims(strings.ToUpper(a.Issuer()), "svc-jwt", "admin")),
		"C's own token, asked a second time": c.Token(t, "svc-jwt", "read"),
	} {
		t.Run(name, func(t *testing.T) {
			tc.get("/", "Bearer "+tok).expect(t, 401, want, body)
		})
	}
	noCalls(t, "A", a)
	noCalls(t, "B", b)
	if logs := tc.logs(); !strings.Contains(logs, `"reason":"issuer_not_trusted"`) || !strings.Contains(logs, c.Issuer()) {
		t.Errorf("the rejection's log line does not name the untrusted issuer:\n%s", logs)
	}
}

// A reload that drops an issuer from trust drops it for good: its tokens,
// cached a moment ago, are refused at once, and its validator (cache,
// keys) is gone. The issuers that stay keep their warm validators.
func TestReloadRemovingATrustedIssuerRefusesItsCachedTokens(t *testing.T) {
	a := testas.Start(t)
	b := testas.Start(t, testas.WithClients(partnerApp))
	c := testas.Start(t, testas.WithClients(partnerApp))
	tc := startCaddy(t, trustSite(a, b, c))
	tokA, tokB, tokC := a.Token(t, "svc-jwt", "read"), b.Token(t, "partner-app", "read"), c.Token(t, "partner-app", "read")
	for i := 0; i < 2; i++ { // the second round comes from the caches
		tc.get("/", "Bearer "+tokA).expect(t, 200, "", "ok svc-jwt")
		tc.get("/", "Bearer "+tokB).expect(t, 200, "", "ok partner-app")
		tc.get("/", "Bearer "+tokC).expect(t, 200, "", "ok partner-app")
	}
	if a.JWKSCalls() != 1 || b.JWKSCalls() != 1 || c.JWKSCalls() != 1 {
		t.Fatalf("JWKS fetches A %d, B %d, C %d; want 1 each (load time)", a.JWKSCalls(), b.JWKSCalls(), c.JWKSCalls())
	}

	tc.load(trustSite(a, c)) // B removed
	afterReload(t, tc, "Bearer "+tokB).expect(t, 401,
		`Bearer realm="tokengate", error="invalid_token", error_description="issuer not trusted"`,
		`{"error":"invalid_token","error_description":"issuer not trusted"}`)
	afterReload(t, tc, "Bearer "+tokA).expect(t, 200, "", "ok svc-jwt")
	afterReload(t, tc, "Bearer "+tokC).expect(t, 200, "", "ok partner-app")
	if a.JWKSCalls() != 1 || c.JWKSCalls() != 1 {
		t.Errorf("A and C fetched their keys again across the reload (A %d, C %d): their validators should have been kept", a.JWKSCalls(), c.JWKSCalls())
	}

	// Trusted again, B starts from nothing: a new validator fetches its
	// keys, the old one and its cache were destroyed with the config.
	tc.load(trustSite(a, b, c))
	afterReload(t, tc, "Bearer "+tokB).expect(t, 200, "", "ok partner-app")
	if n := b.JWKSCalls(); n != 2 {
		t.Errorf("B's JWKS fetches = %d, want 2: a re-added issuer gets a new validator", n)
	}
}

// afterReload is a request soon after a reload. The old server's shutdown
// can still close (EOF) or reset a connection that the listener it shared
// with the new server accepted a moment before: that request got no answer
// at all, so it is sent again (at most twice more); any answer counts.
func afterReload(t *testing.T, tc *testCaddy, authorization string) result {
	t.Helper()
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequest(http.MethodGet, tc.base+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", authorization)
		resp, err := tc.client.Do(req)
		if err != nil {
			if attempt < 2 && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				continue
			}
			t.Fatalf("GET / after the reload: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return result{status: resp.StatusCode, header: resp.Header, body: string(b)}
	}
}

// Every metric says which issuer it is about: the route's own, a trusted
// one, or none (a token refused before any issuer was asked).
func TestMetricsCountEachTrustedIssuerApart(t *testing.T) {
	a := testas.Start(t)
	b := testas.Start(t, testas.WithClients(partnerApp))
	c := testas.Start(t)
	p := startCaddyProcess(t, trustSite(a, b))
	mustAllow(t, p, a.Token(t, "svc-jwt", "read"), "A's token")
	tokB := b.Token(t, "partner-app", "read")
	mustAllow(t, p, tokB, "B's token")
	mustAllow(t, p, tokB, "B's token again")
	if r, _ := call(t, p, c.Token(t, "svc-jwt", "read")); r.status != 401 {
		t.Fatalf("C's token: %d", r.status)
	}
	if r, _ := call(t, p, b.Token(t, "svc-jwt", "read")); r.status != 401 {
		t.Fatalf("B's token for another audience: %d", r.status)
	}

	m := scrape(t, p)
	ia, ib := `issuer="`+a.Issuer()+`"`, `issuer="`+b.Issuer()+`"`
	m.expectCounters(t, map[string]float64{
		mDecisions + `{` + ia + `,outcome="allowed"}`:                    1,
		mDecisions + `{` + ib + `,outcome="allowed"}`:                    2,
		mDecisions + `{` + ib + `,outcome="invalid_token"}`:              1,
		mDecisions + `{issuer="",outcome="invalid_token"}`:               1,
		mCache + `{` + ib + `,tier="memory",result="hit"}`:               1,
		mCache + `{` + ib + `,tier="memory",result="miss"}`:              2,
		mCache + `{` + ia + `,tier="memory",result="miss"}`:              1,
		`caddy_bearer_auth_jwks_refreshes_total{` + ia + `,result="ok"}`: 1,
		`caddy_bearer_auth_jwks_refreshes_total{` + ib + `,result="ok"}`: 1,
	})
	// Bounded: the untrusted issuer's name is in no series.
	for name, fam := range m {
		for _, s := range fam.GetMetric() {
			for _, l := range s.GetLabel() {
				if strings.Contains(l.GetValue(), c.Issuer()) {
					t.Errorf("%s has a series labelled with the untrusted issuer %s", name, c.Issuer())
				}
			}
		}
	}
}
