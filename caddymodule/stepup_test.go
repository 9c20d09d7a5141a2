package caddymodule

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testas"
)

// RFC 9470 step-up, against a real authorization server whose tokens carry
// acr and auth_time (as its tokens from a user's login would), opaque
// (introspected) and JWT (verified locally) alike.

// stepUpClient registers an opaque-token client and a JWT one (id+"-jwt")
// whose tokens carry claims and are meant for aud.
func stepUpClients(as *testas.Server, id string, aud string, scopes []string, claims map[string]any) {
	as.AddClient(testas.Client{ID: id, Secret: "s", Scopes: scopes, Audience: []string{aud}, Claims: claims})
	as.AddClient(testas.Client{ID: id + "-jwt", Secret: "s", Scopes: scopes, Audience: []string{aud}, Claims: claims, JWTAccessTokens: true})
}

func TestStepUpAcrValuesAndMaxAge(t *testing.T) {
	as := testas.Start(t)
	const resource = "https://mcp.example.com/mcp"
	const rm = `, resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`
	now := time.Now()
	fresh, old := now.Add(-time.Minute).Unix(), now.Add(-2*time.Hour).Unix()
	read := []string{"read"}
	stepUpClients(as, "gold", resource, read, map[string]any{"acr": "phr", "auth_time": fresh})
	stepUpClients(as, "no-acr", resource, read, map[string]any{"auth_time": fresh})
	stepUpClients(as, "silver", resource, read, map[string]any{"acr": "urn:example:silver", "auth_time": fresh})
	stepUpClients(as, "stale", resource, read, map[string]any{"acr": "phr", "auth_time": old})
	stepUpClients(as, "no-auth-time", resource, read, map[string]any{"acr": "phr"})
	stepUpClients(as, "gold-lacking-scope", resource, []string{"write"}, map[string]any{"acr": "phr", "auth_time": fresh})
	stepUpClients(as, "nothing", resource, []string{"write"}, nil)
	stepUpClients(as, "auth-time-string", resource, read, map[string]any{"acr": "phr", "auth_time": strconv.FormatInt(fresh, 10)})

	tc := startCaddy(t, fmt.Sprintf(`	handle /recent {
%s
	}
	handle {
%s
	}`, prmSite(as, `		max_age 10m
		audience `+resource), prmSite(as, `		scopes read
		acr_values urn:example:gold phr
		max_age 1h
		resource_metadata {
			resource `+resource+`
		}`)))

	const (
		realm   = `Bearer realm="tokengate", error="insufficient_user_authentication"`
		askBoth = `, acr_values="urn:example:gold phr", max_age="3600", scope="read"` + rm
		body    = `{"error":"insufficient_user_authentication","error_description":%q,"acr_values":"urn:example:gold phr","max_age":3600}`
	)
	stepUp := func(desc string) (string, string) {
		return realm + `, error_description="` + desc + `"` + askBoth, fmt.Sprintf(body, desc)
	}
	type want struct {
		status          int
		challenge, body string
	}
	noACR := "the token does not say how the user authenticated (no acr); this API requires a stronger authentication"
	cases := []struct {
		name, client string
		want         want
	}{
		{"a token meeting both", "gold", want{200, "", ""}},
		{"no acr", "no-acr", want{401, "", noACR}},
		{"an acr not listed", "silver", want{401, "", "the user's authentication (acr) is not one this API accepts"}},
		{"an old auth_time", "stale", want{401, "", "the user authenticated too long ago for this API"}},
		{"no auth_time", "no-auth-time", want{401, "", "the token does not say when the user authenticated (no auth_time); this API requires a recent authentication"}},
		// A new login would not add the scope: the client is told that.
		{"a scope failure stays 403", "gold-lacking-scope", want{403, "", ""}},
		{"a scope failure stays 403 without any acr either", "nothing", want{403, "", ""}},
	}
	for _, c := range cases {
		for _, id := range []string{c.client, c.client + "-jwt"} {
			t.Run(c.name+"/"+id, func(t *testing.T) {
				scope := "read"
				if c.want.status == 403 {
					scope = "write"
				}
				r := tc.get("/mcp", "Bearer "+as.Token(t, id, scope))
				switch c.want.status {
				case 200:
					if r.status != 200 || r.body != fmt.Sprintf("ok %s acr=phr auth_time=%d", id, fresh) {
						t.Errorf("got %d %q", r.status, r.body)
					}
				case 403:
					r.expect(t, 403, `Bearer realm="tokengate", error="insufficient_scope", error_description="the token lacks a required scope", scope="read"`+rm,
						`{"error":"insufficient_scope","error_description":"the token lacks a required scope","scope":"read"}`)
				default:
					ch, b := stepUp(c.want.body)
					r.expect(t, 401, ch, b)
				}
			})
		}
	}

	// A route with max_age alone asks for max_age alone; without
	// resource_metadata, no resource_metadata and no scope in 401s.
	t.Run("max_age alone", func(t *testing.T) {
		desc := "the user authenticated too long ago for this API"
		tc.get("/recent", "Bearer "+as.Token(t, "stale", "read")).expect(t, 401,
			realm+`, error_description="`+desc+`", max_age="600"`,
			`{"error":"insufficient_user_authentication","error_description":"`+desc+`","max_age":600}`)
		if r := tc.get("/recent", "Bearer "+as.Token(t, "silver-jwt", "read")); r.status != 200 {
			t.Errorf("acr is not required there: %d %q", r.status, r.body)
		}
	})

	// Strict types: auth_time is a NumericDate. In a JWT a string is the
	// token's fault; in an introspection answer, the server's (fail closed).
	t.Run("auth_time as a string", func(t *testing.T) {
		const desc = "malformed token: auth_time claim must be a JSON number (NumericDate), not a string"
		tc.get("/mcp", "Bearer "+as.Token(t, "auth-time-string-jwt", "read")).expect(t, 401,
			`Bearer realm="tokengate", error="invalid_token", error_description="`+desc+`", scope="read"`+rm,
			`{"error":"invalid_token","error_description":"`+desc+`"}`)
		if r := tc.get("/mcp", "Bearer "+as.Token(t, "auth-time-string", "read")); r.status != http.StatusServiceUnavailable {
			t.Errorf("introspection answer with a string auth_time: %d %q, want 503", r.status, r.body)
		}
	})
}

// The policy is applied on every request, cached decisions included: a
// decision cached by a route without step-up is refused by one with it, and
// the token is still checked only once.
func TestStepUpAppliesToCachedDecisions(t *testing.T) {
	as := testas.Start(t)
	const aud = "https://api.example.com"
	stepUpClients(as, "silver", aud, []string{"read"}, map[string]any{"acr": "urn:example:silver", "auth_time": time.Now().Unix()})
	tc := startCaddy(t, fmt.Sprintf(`	handle /gold {
%s
	}
	handle {
%s
	}`, prmSite(as, "		audience "+aud+"\n		acr_values urn:example:gold"), prmSite(as, "		audience "+aud)))
	tok := as.Token(t, "silver", "read")
	if r := tc.get("/open", "Bearer "+tok); r.status != 200 {
		t.Fatalf("/open: %d %q", r.status, r.body)
	}
	for range 2 {
		if r := tc.get("/gold", "Bearer "+tok); r.status != 401 || challenge(t, r)["error"] != "insufficient_user_authentication" {
			t.Fatalf("/gold with the cached decision: %d %q", r.status, r.header.Get("WWW-Authenticate"))
		}
		if r := tc.get("/open", "Bearer "+tok); r.status != 200 {
			t.Fatalf("/open again: %d", r.status)
		}
	}
	if n := as.IntrospectionCalls(); n != 1 {
		t.Errorf("introspection calls = %d, want 1: one decision, judged per route", n)
	}
}
