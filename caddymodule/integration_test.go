package caddymodule

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testas"
)

func introspectSite(as *testas.Server, extra string) string {
	return fmt.Sprintf(`	bearer_auth {
		issuer %s
		introspect {
			client_id %s
			client_secret %s
		}
%s
	}
	respond "ok {http.auth.user.id} {http.auth.bearer.client_id} [{http.auth.bearer.scope}]"`, as.Issuer(), testas.GatewayID, testas.GatewaySecret, extra)
}

func TestClientCredentialsTokenIsAllowedThroughIntrospection(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, introspectSite(as, "scopes read"))
	tok := as.Token(t, "svc-a", "read", "write")
	r := tc.get("/", "Bearer "+tok)
	if r.status != 200 || r.body != "ok svc-a svc-a [read write]" {
		t.Fatalf("got %d %q", r.status, r.body)
	}
	if as.IntrospectionCalls() != 1 {
		t.Errorf("introspection calls = %d, want 1", as.IntrospectionCalls())
	}
}

func TestRevokedTokenIsInvalidToken(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, introspectSite(as, ""))
	tok := as.Token(t, "svc-a", "read")
	as.Revoke(t, "svc-a", tok)
	tc.get("/", "Bearer "+tok).expect(t, 401,
		`Bearer realm="tokengate", error="invalid_token", error_description="the token is not active (expired, revoked, or unknown to the authorization server)"`,
		`{"error":"invalid_token","error_description":"the token is not active (expired, revoked, or unknown to the authorization server)"}`)
}

func TestMissingScopeIsInsufficientScopeWithScopeAttribute(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, introspectSite(as, "scopes read write"))
	tok := as.Token(t, "svc-b", "read")
	tc.get("/", "Bearer "+tok).expect(t, 403,
		`Bearer realm="tokengate", error="insufficient_scope", error_description="the token lacks a required scope", scope="read write"`,
		`{"error":"insufficient_scope","error_description":"the token lacks a required scope","scope":"read write"}`)
}

func TestClientNotInClientsIsUnauthorizedClient(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, introspectSite(as, "clients svc-a"))
	tc.get("/", "Bearer "+as.Token(t, "svc-b", "read")).expect(t, 403,
		`Bearer realm="tokengate", error="unauthorized_client", error_description="the client this token was issued to may not use this API"`,
		`{"error":"unauthorized_client","error_description":"the client this token was issued to may not use this API"}`)
	if r := tc.get("/", "Bearer "+as.Token(t, "svc-a", "read")); r.status != 200 {
		t.Errorf("allowed client: status %d", r.status)
	}
}

func TestStoppedAuthorizationServerGives503WithRetryAfter(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, introspectSite(as, ""))
	good := as.Token(t, "svc-a", "read")
	if r := tc.get("/", "Bearer "+good); r.status != 200 {
		t.Fatalf("warm-up: %d", r.status)
	}
	fresh := as.Token(t, "svc-a", "read")
	as.Stop()
	r := tc.get("/", "Bearer "+fresh)
	r.expect(t, 503, "", `{"error":"temporarily_unavailable","error_description":"the authorization server could not be reached; try again later"}`)
	if r.header.Get("Retry-After") != "5" {
		t.Errorf("Retry-After = %q, want 5", r.header.Get("Retry-After"))
	}
	// A decision cached before the outage keeps working.
	if r := tc.get("/", "Bearer "+good); r.status != 200 {
		t.Errorf("cached token during outage: %d", r.status)
	}
	if !strings.Contains(tc.logs(), `"check":"could not connect to `) {
		t.Errorf("the error log line does not say what to check:\n%s", tc.logs())
	}
	as.Restart(t)
	if r := tc.get("/", "Bearer "+fresh); r.status != 200 {
		t.Errorf("after the AS came back: %d (errors are not cached)", r.status)
	}
}

func TestRepeatedRequestsWithOneTokenIntrospectOnce(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, introspectSite(as, ""))
	tok := as.Token(t, "svc-a", "read")
	for i := 0; i < 200; i++ {
		if r := tc.get("/", "Bearer "+tok); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	if n := as.IntrospectionCalls(); n != 1 {
		t.Errorf("introspection calls = %d, want 1", n)
	}
}

func TestConcurrentFirstRequestsAreCoalescedIntoOneCall(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, introspectSite(as, ""))
	tok := as.Token(t, "svc-a", "read")
	as.SetDelay(100 * time.Millisecond) // all 50 arrive while the first call is in flight
	var wg sync.WaitGroup
	statuses := make([]int, 50)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = tc.get("/", "Bearer "+tok).status
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 200 {
			t.Errorf("request %d: %d", i, s)
		}
	}
	if n := as.IntrospectionCalls(); n != 1 {
		t.Errorf("introspection calls = %d, want 1", n)
	}
}

func TestNegativeDecisionIsCached(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, introspectSite(as, ""))
	for i := 0; i < 20; i++ {
		if r := tc.get("/", "Bearer not-a-real-token"); r.status != 401 {
			t.Fatalf("status %d", r.status)
		}
	}
	if n := as.IntrospectionCalls(); n != 1 {
		t.Errorf("introspection calls = %d, want 1", n)
	}
}

func TestCacheSurvivesReloadWithSameValidationSettings(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, introspectSite(as, ""))
	tok := as.Token(t, "svc-a", "read")
	tc.get("/", "Bearer "+tok)
	// Same validation settings, different policy and response.
	tc.load(introspectSite(as, "scopes read") + "\n\theader X-Reloaded yes")
	r := tc.get("/", "Bearer "+tok)
	if r.status != 200 || r.header.Get("X-Reloaded") != "yes" {
		t.Fatalf("after reload: %d %v", r.status, r.header)
	}
	if n := as.IntrospectionCalls(); n != 1 {
		t.Errorf("introspection calls after reload = %d, want 1 (cache lost)", n)
	}
	// Changed validation settings: a new cache.
	tc.load(introspectSite(as, "cache {\n\t\t\tttl 1m\n\t\t}"))
	tc.get("/", "Bearer "+tok)
	if n := as.IntrospectionCalls(); n != 2 {
		t.Errorf("introspection calls after a settings change = %d, want 2", n)
	}
}

func TestClientSecretFromEnvPlaceholderAndPostMethod(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, fmt.Sprintf(`	bearer_auth {
		introspect {
			endpoint %s
			client_id gateway
			client_secret {env.TG_TEST_SECRET}
			auth_method client_secret_post
		}
	}
	respond "ok"`, as.IntrospectionURL()), withEnv("TG_TEST_SECRET="+testas.GatewaySecret))
	if r := tc.get("/", "Bearer "+as.Token(t, "svc-a")); r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
}

func TestWrongGatewaySecretIs503AndLogsWhatToCheck(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, fmt.Sprintf(`	bearer_auth {
		introspect {
			endpoint %s
			client_id gateway
			client_secret wrong
		}
	}
	respond "ok"`, as.IntrospectionURL()))
	r := tc.get("/", "Bearer "+as.Token(t, "svc-a"))
	if r.status != 503 || r.header.Get("WWW-Authenticate") != "" {
		t.Fatalf("status %d, WWW-Authenticate %q: the caller's token must not be blamed", r.status, r.header.Get("WWW-Authenticate"))
	}
	logs := tc.logs()
	for _, want := range []string{`"level":"error"`, `"as_error":"invalid_client"`, `client_secret`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

func TestNoRawTokenEverReachesTheLog(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, introspectSite(as, "scopes admin"))
	good := as.Token(t, "svc-a", "read")
	revoked := as.Token(t, "svc-a", "read")
	as.Revoke(t, "svc-a", revoked)
	tc.get("/", "Bearer "+good)
	tc.get("/", "Bearer "+revoked)
	tc.get("/", "Bearer "+good+" extra")
	unseen := as.Token(t, "svc-a", "read")
	as.Stop()
	tc.get("/", "Bearer "+unseen)
	logs := tc.logs()
	if !strings.Contains(logs, "token_fingerprint") {
		t.Fatalf("no fingerprints logged at all; the test would prove nothing:\n%s", logs)
	}
	for _, tok := range []string{good, revoked, unseen} {
		for _, part := range strings.Split(tok, ".") {
			if len(part) >= 16 && strings.Contains(logs, part) {
				t.Errorf("log contains part of a raw token")
			}
		}
	}
}

func TestForwardClaimReplacesClientSuppliedHeaderAndStripAuthorization(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, fmt.Sprintf(`	bearer_auth {
		issuer %s
		introspect {
			client_id gateway
			client_secret gateway-secret
		}
		forward_claim client_id X-Client
		forward_claim no_such_claim X-Missing
		strip_authorization
	}
	respond "client={header.X-Client} missing={header.X-Missing} underscore={header.X_Client} auth={header.Authorization} iss={http.auth.bearer.claims.iss}"`, as.Issuer()))
	r := tc.do("GET", "/", map[string]string{
		"Authorization": "Bearer " + as.Token(t, "svc-a"),
		"X-Client":      "forged",
		"X_Client":      "forged", // CGI upstreams read it as HTTP_X_CLIENT too
		"X-Missing":     "forged",
	}, nil)
	want := "client=svc-a missing= underscore= auth= iss=" + as.Issuer()
	if r.status != 200 || r.body != want {
		t.Fatalf("got %d %q, want %q", r.status, r.body, want)
	}
}
