package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tokengate/tokengate/internal/nodeas"
	"github.com/tokengate/tokengate/internal/redistest"
	"github.com/tokengate/tokengate/internal/testas"
)

// The tests in this file replay traffic an anonymous attacker can send. None
// of it may change how another caller's token is judged.

// junkTokens are tokens the authorization server will not even parse. The
// real AS answers their introspection with HTTP 400 (unsupported_token_type
// or invalid_request): an answer about that token, not about the server's
// health.
var junkTokens = []string{
	// JWT-shaped junk.
	"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.AAAA",
	// alg none.
	b64url(`{"alg":"none"}`) + "." + b64url(`{"sub":"admin","iss":"x"}`) + ".",
	// JWE-shaped junk (five segments).
	"eyJhbGciOiJkaXIiLCJlbmMiOiJBMTI4R0NNIn0..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA",
	// A JWT from a foreign issuer.
	b64url(`{"alg":"RS256","kid":"k"}`) + "." + b64url(`{"iss":"https://evil.example","sub":"x","exp":9999999999}`) + ".c2ln",
}

func sendJunk(t *testing.T, tc *testCaddy, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		tok := junkTokens[i%len(junkTokens)]
		if r := tc.get("/", "Bearer "+tok); r.status != http.StatusUnauthorized {
			t.Fatalf("junk token %d: status %d, want 401 (body %q)", i, r.status, r.body)
		}
	}
}

// nodeSite guards a route with introspection at oidc-provider (a second,
// independent AS implementation). It refuses to introspect any JWT-shaped
// token with HTTP 400 unsupported_token_type.
func nodeSite(as *nodeas.Server, extra string) string {
	return fmt.Sprintf(`	bearer_auth {
		issuer %s
		introspect {
			client_id %s
			client_secret %s
		}
%s
	}
	respond "ok {http.auth.user.id}"`, as.Issuer(), nodeas.GatewayID, nodeas.GatewaySecret, extra)
}

// hostileRoutes are the modes junk can reach the authorization server in,
// for both test AS implementations: introspection of everything, and hybrid
// (JWTs of our issuer verified locally, everything else introspected).
func hostileRoutes(t *testing.T) []struct {
	name  string
	site  string
	token func() string
	as    interface{ IntrospectionCalls() int }
} {
	zit := testas.Start(t)
	// Tokens for jwtResource are JWTs (verified locally in hybrid mode);
	// tokens for opaqueResource are opaque, introspected, with aud set.
	const jwtResource, opaqueResource = "https://api.tokengate.test", "https://opaque.tokengate.test"
	node := nodeas.Start(t, nodeas.WithResourceServer(opaqueResource, map[string]any{"accessTokenFormat": "opaque"}))
	return []struct {
		name  string
		site  string
		token func() string
		as    interface{ IntrospectionCalls() int }
	}{
		{"zitadel introspection", introspectSite(zit, ""), func() string { return zit.Token(t, "svc-a", "read") }, zit},
		{"zitadel hybrid", introspectSite(zit, "\t\taudience svc-a\n\t\tjwt {\n\t\t\ttyp JWT\n\t\t}"), func() string { return zit.Token(t, "svc-a", "read") }, zit},
		{"oidc-provider introspection", nodeSite(node, ""), func() string { return node.Token(t, "svc-a", "read") }, node},
		{"oidc-provider hybrid", nodeSite(node, "\t\taudience "+jwtResource+" "+opaqueResource+"\n\t\tjwt"), func() string { return node.TokenWithResource(t, "svc-a", opaqueResource, "read") }, node},
	}
}

func TestJunkTokensDoNotTripTheBreakerForValidTokens(t *testing.T) {
	t.Parallel()
	for _, route := range hostileRoutes(t) {
		t.Run(route.name, func(t *testing.T) {
			tc := startCaddy(t, route.site)
			sendJunk(t, tc, 12)
			// A fresh valid token right after the burst must be checked,
			// not refused with 503 by a breaker the junk opened.
			for i := 0; i < 3; i++ {
				if r := tc.get("/", "Bearer "+route.token()); r.status != http.StatusOK {
					t.Fatalf("valid token %d after junk: status %d (body %q), want 200", i, r.status, r.body)
				}
			}
			logs := tc.logs()
			if strings.Contains(logs, "as_rejected_gateway") || strings.Contains(logs, "fail fast") || strings.Contains(logs, `"level":"error"`) {
				t.Errorf("junk tokens were blamed on the gateway or opened the breaker:\n%s", grepLines(logs, "rejected_gateway", "fail fast", `"level":"error"`))
			}
			if strings.HasPrefix(route.name, "oidc-provider") && !strings.Contains(logs, `"reason":"as_rejected_token"`) {
				t.Errorf("no info line explaining that the AS refused the junk token")
			}
			// A repeat of the same junk is answered from the negative cache.
			calls := route.as.IntrospectionCalls()
			tc.get("/", "Bearer "+junkTokens[0])
			if n := route.as.IntrospectionCalls(); n != calls {
				t.Errorf("repeat junk token: %d more introspection calls, want 0 (negatively cached)", n-calls)
			}
		})
	}
}

// A server that refuses the gateway's request itself (here: credentials
// sent in a way it does not accept) answers the canary with the same 400:
// the gateway's trouble (503 and an error line), not the caller's token.
func TestA400ForEveryRequestIsTheGatewaysFaultNotTheTokens(t *testing.T) {
	t.Parallel()
	node := nodeas.Start(t)
	tc := startCaddy(t, nodeSite(node, ""))
	tc.load(strings.Replace(nodeSite(node, ""), "client_secret "+nodeas.GatewaySecret, "client_secret "+nodeas.GatewaySecret+"\n\t\t\tauth_method bearer\n\t\t\ttoken_endpoint "+node.Issuer()+"/nope", 1))
	r := tc.get("/", "Bearer "+node.Token(t, "svc-a", "read"))
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", r.status)
	}
}

func TestRevokedTokenIsNotServedStaleWhileTheServerIsHealthy(t *testing.T) {
	t.Parallel()
	as := nodeas.Start(t)
	tc := startCaddy(t, nodeSite(as, `		cache {
			ttl 200ms
			stale_grace 2m
		}`))
	tok := as.Token(t, "svc-a", "read")
	if r := tc.get("/", "Bearer "+tok); r.status != http.StatusOK {
		t.Fatalf("fresh token: %d", r.status)
	}
	as.Revoke(t, "svc-a", tok)
	time.Sleep(300 * time.Millisecond) // past ttl: the entry is now stale
	for i := 0; i < 8; i++ {           // judged elsewhere; here only their side effects matter
		tc.get("/", "Bearer "+junkTokens[i%len(junkTokens)])
	}
	for i := 0; i < 3; i++ {
		if r := tc.get("/", "Bearer "+tok); r.status != http.StatusUnauthorized {
			t.Fatalf("revoked token with the AS up (try %d): status %d, want 401", i, r.status)
		}
	}
}

// A breaker opened by the gateway's own refused credentials is not an
// outage of the server: the server is up and could say the token is revoked.
func TestStaleGraceIsNotUsedWhenTheServerRefusesTheGateway(t *testing.T) {
	t.Parallel()
	as := newHostileAS(t)
	var mode atomic.Int32 // 0 active, 1 refuse the gateway, 2 down (502)
	as.set(func(w http.ResponseWriter) {
		switch mode.Load() {
		case 0:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"active":true,"client_id":"c","exp":9999999999}`)
		case 1:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
		default:
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	tc := startCaddy(t, hostileSite(as.URL, "\t\tcache {\n\t\t\tttl 100ms\n\t\t\tstale_grace 1m\n\t\t}"))
	if r := tc.get("/", "Bearer known"); r.status != http.StatusOK {
		t.Fatalf("known token: %d", r.status)
	}
	time.Sleep(150 * time.Millisecond) // past ttl
	mode.Store(1)
	for i := 0; i < 8; i++ { // enough to open the breaker
		if r := tc.get("/", "Bearer known"); r.status != http.StatusServiceUnavailable {
			t.Fatalf("refused gateway credentials, try %d: status %d, want 503 (no stale)", i, r.status)
		}
	}
	// The server goes down for real: stale decisions are now what the
	// operator asked for.
	mode.Store(2)
	// Once the breaker's open interval (1s) has passed it lets a probe
	// through, which meets the outage: from then on the stale decision is
	// served. Until then every answer is the 503 of the open breaker.
	var last result
	if !eventually(5*time.Second, 20*time.Millisecond, func() bool {
		last = tc.get("/", "Bearer known")
		return last.status != http.StatusServiceUnavailable
	}) || last.status != http.StatusOK {
		t.Fatalf("known token during an outage, with stale_grace: %d, want 200 once the breaker probes", last.status)
	}
}

func TestGatewayWithoutStaleGraceNeverServesASharedStaleEntry(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	rs := redistest.Start(t)
	withGrace := startCaddyProcess(t, fleetSite(as, rs.URL(), "\t\t\tttl 200ms\n\t\t\tstale_grace 2m\n", ""))
	withoutGrace := startCaddyProcess(t, fleetSite(as, rs.URL(), "\t\t\tttl 200ms\n", ""))

	tok := as.Token(t, "svc-a", "read")
	mustAllow(t, withGrace, tok, "gateway with grace, fresh token")
	as.Revoke(t, "svc-a", tok)
	time.Sleep(300 * time.Millisecond) // past ttl: the shared entry is stale
	as.Stop()
	r, _ := call(t, withoutGrace, tok)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("gateway without stale_grace, revoked token it never saw, AS down: status %d, want 503", r.status)
	}
	// The gateway that chose stale_grace still serves it during the outage.
	mustAllow(t, withGrace, tok, "gateway with grace during the outage")
}

// grepLines returns the lines of s that contain any of the words.
func grepLines(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

func TestLeewayAppliesToExpOnTheJWTPathAndInTheCache(t *testing.T) {
	t.Parallel()
	tc := startCaddy(t, demoSite(""))
	now := time.Now()
	// Expired 10 s ago: within the default 30 s leeway.
	tok := mint(t, demoKey, demoIssuer, demoAudience, "read", "demo-client", -10*time.Second, now)
	for i := 0; i < 2; i++ { // the second answer comes from the cache
		if r := tc.get("/", "Bearer "+tok); r.status != http.StatusOK {
			t.Fatalf("exp 10s ago, leeway 30s (request %d): status %d %q, want 200", i, r.status, r.header.Get("WWW-Authenticate"))
		}
	}
	old := mint(t, demoKey, demoIssuer, demoAudience, "read", "demo-client", -40*time.Second, now)
	if r := tc.get("/", "Bearer "+old); r.status != http.StatusUnauthorized {
		t.Fatalf("exp 40s ago, leeway 30s: status %d, want 401", r.status)
	}
	tc.load(demoSite("\t\tleeway 5s"))
	if r := tc.get("/", "Bearer "+mint(t, demoKey, demoIssuer, demoAudience, "read", "demo-client", -10*time.Second, now)); r.status != http.StatusUnauthorized {
		t.Fatalf("exp 10s ago, leeway 5s: status %d, want 401", r.status)
	}
}

func TestLeewayAppliesToExpOnTheIntrospectionPath(t *testing.T) {
	t.Parallel()
	as := newHostileAS(t)
	exp := time.Now().Add(-10 * time.Second).Unix()
	as.set(func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"active":true,"client_id":"c","exp":%d}`, exp)
	})
	tc := startCaddy(t, hostileSite(as.URL, ""))
	for i := 0; i < 2; i++ {
		if r := tc.get("/", "Bearer t1"); r.status != http.StatusOK {
			t.Fatalf("introspection exp 10s ago, leeway 30s (request %d): status %d, want 200", i, r.status)
		}
	}
	tc.load(hostileSite(as.URL, "\t\tleeway 5s"))
	if r := tc.get("/", "Bearer t2"); r.status != http.StatusUnauthorized {
		t.Fatalf("introspection exp 10s ago, leeway 5s: status %d, want 401", r.status)
	}
}

func TestTwoDifferentLeewaysAreAConfigError(t *testing.T) {
	t.Parallel()
	h := &Handler{Leeway: caddyDuration(10 * time.Second), JWT: &JWTConfig{JWKSFile: "x", Leeway: caddyDuration(20 * time.Second)}, Issuer: demoIssuer, Audience: []string{demoAudience}}
	if err := h.prepare(); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Fatalf("Validate() = %v, want an error naming the two leeways", err)
	}
}

func caddyDuration(d time.Duration) caddy.Duration { return caddy.Duration(d) }
