package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/tokengate/tokengate/internal/testas"
)

// RFC 9728 protected resource metadata, served by bearer_auth itself, and
// the challenge parameters that point clients at it.

// prmSite is a bearer_auth block against as (introspection, and local
// verification of its JWTs) with extra sub-directives, answering with the
// step-up placeholders.
func prmSite(as *testas.Server, extra string) string {
	return fmt.Sprintf(`	bearer_auth {
		issuer %s
		introspect {
			client_id %s
			client_secret %s
		}
		jwt {
			typ JWT
		}
%s
	}
	respond "ok {http.auth.user.id} acr={http.auth.bearer.acr} auth_time={http.auth.bearer.auth_time}"`,
		as.Issuer(), testas.GatewayID, testas.GatewaySecret, extra)
}

// challenge parses a WWW-Authenticate header with the MCP Go SDK's own
// parser (the one its clients act on), and returns the first challenge's
// parameters; that challenge must be Bearer.
func challenge(t *testing.T, r result) map[string]string {
	t.Helper()
	cs, err := oauthex.ParseWWWAuthenticate(r.header.Values("WWW-Authenticate"))
	if err != nil {
		t.Fatalf("WWW-Authenticate %q does not parse: %v", r.header.Get("WWW-Authenticate"), err)
	}
	if len(cs) == 0 || cs[0].Scheme != "bearer" {
		t.Fatalf("WWW-Authenticate %q: the first challenge is not Bearer", r.header.Get("WWW-Authenticate"))
	}
	return cs[0].Params
}

// The documents are built from the configured resource, wherever the
// gateway itself is reached: the resources below are public URLs, and the
// test talks to the gateway on its loopback port.
func TestResourceMetadataDocumentsFieldByField(t *testing.T) {
	as := testas.Start(t)
	const base = "https://mcp.example.com"
	const wk = "/.well-known/oauth-protected-resource"
	for _, c := range []struct {
		name  string
		extra string
		// url is the document's URL, as challenges name it; served are the
		// paths answered with the document, others are guarded as usual.
		url           string
		served        []string
		notServed     []string
		want          map[string]any
		wantChallenge string
	}{
		{
			name: "a resource with a path: the path-suffixed form and the bare one, every default",
			extra: `		scopes read
		any_scope write admin
		resource_metadata {
			resource ` + base + `/mcp
		}`,
			url:       base + wk + "/mcp",
			served:    []string{wk + "/mcp", wk},
			notServed: []string{wk + "/other", wk + "/mcp/x", wk + "/", "/mcp"},
			want: map[string]any{
				"resource":                 base + "/mcp",
				"authorization_servers":    []any{as.Issuer()},
				"scopes_supported":         []any{"read", "write", "admin"},
				"bearer_methods_supported": []any{"header"},
			},
			wantChallenge: `Bearer realm="tokengate", scope="read write admin", resource_metadata="` + base + wk + `/mcp"`,
		},
		{
			name: "a resource without a path: the bare form only, every value explicit",
			extra: `		audience urn:example:other ` + base + `
		scopes tools:call
		allow_form_token
		allow_query_token
		resource_metadata {
			resource ` + base + `
			authorization_servers https://as1.example https://as2.example/realms/x
			scopes_supported tools:read tools:call
			resource_name "Example MCP server"
			resource_documentation https://docs.example/mcp?lang=en&v=2
		}`,
			url:       base + wk,
			served:    []string{wk},
			notServed: []string{wk + "/mcp", "/"},
			want: map[string]any{
				"resource":                 base,
				"authorization_servers":    []any{"https://as1.example", "https://as2.example/realms/x"},
				"scopes_supported":         []any{"tools:read", "tools:call"},
				"bearer_methods_supported": []any{"header", "body", "query"},
				"resource_name":            "Example MCP server",
				"resource_documentation":   "https://docs.example/mcp?lang=en&v=2",
			},
			// scope= is what the route requires, not what is supported.
			wantChallenge: `Bearer realm="tokengate", scope="tools:call", resource_metadata="` + base + wk + `"`,
		},
		{
			name: "the resource taken from the one audience, no scopes",
			extra: `		audience ` + base + `/api/v1/
		resource_metadata`,
			url:       base + wk + "/api/v1/",
			served:    []string{wk + "/api/v1/", wk},
			notServed: []string{wk + "/api/v1", wk + "/api"},
			want: map[string]any{
				"resource":                 base + "/api/v1/",
				"authorization_servers":    []any{as.Issuer()},
				"bearer_methods_supported": []any{"header"},
			},
			wantChallenge: `Bearer realm="tokengate", resource_metadata="` + base + wk + `/api/v1/"`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			tc := startCaddy(t, prmSite(as, c.extra))
			t.Cleanup(func() {
				if t.Failed() {
					t.Log(tc.logs())
				}
			})
			for _, p := range c.served {
				// No token, a junk token, a malformed Authorization: the
				// document is answered before any of them is looked at.
				for _, authz := range []string{"", "Bearer junk", "Bearer a b"} {
					r := tc.get(p, authz)
					if r.status != http.StatusOK {
						t.Fatalf("GET %s (Authorization %q): %d %q", p, authz, r.status, r.body)
					}
					for name, want := range map[string]string{"Content-Type": "application/json",
						"Access-Control-Allow-Origin": "*", "WWW-Authenticate": ""} {
						if got := r.header.Get(name); got != want {
							t.Errorf("GET %s: %s = %q, want %q", p, name, got, want)
						}
					}
					var got map[string]any
					if err := json.Unmarshal([]byte(r.body), &got); err != nil {
						t.Fatalf("GET %s: not JSON: %v %q", p, err, r.body)
					}
					if !reflect.DeepEqual(got, c.want) {
						t.Errorf("GET %s:\n got %v\nwant %v", p, got, c.want)
					}
				}
				if r := tc.do(http.MethodHead, p, nil, nil); r.status != http.StatusOK || r.body != "" || r.header.Get("Access-Control-Allow-Origin") != "*" {
					t.Errorf("HEAD %s: %d %q %v", p, r.status, r.body, r.header)
				}
				pre := tc.do(http.MethodOptions, p, map[string]string{"Origin": "https://app.example",
					"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "mcp-protocol-version"}, nil)
				if pre.status != http.StatusNoContent || pre.header.Get("Access-Control-Allow-Origin") != "*" ||
					!strings.Contains(pre.header.Get("Access-Control-Allow-Methods"), "GET") || pre.header.Get("Access-Control-Allow-Headers") != "*" {
					t.Errorf("CORS preflight %s: %d %v", p, pre.status, pre.header)
				}
				if r := tc.do(http.MethodPost, p, nil, []byte("{}")); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD, OPTIONS" {
					t.Errorf("POST %s: %d %v", p, r.status, r.header)
				}
			}
			for _, p := range c.notServed {
				r := tc.get(p, "")
				r.expect(t, http.StatusUnauthorized, c.wantChallenge, `{"error_description":"bearer token required"}`)
				if got := challenge(t, r)["resource_metadata"]; got != c.url {
					t.Errorf("%s: resource_metadata %q, want %q", p, got, c.url)
				}
			}
		})
	}
}

// Every 401 and 403 names the metadata; 401s name the scope the route
// requires, 403 insufficient_scope all of it. Checked with the MCP SDK's
// own challenge parser.
func TestEveryChallengeCarriesResourceMetadata(t *testing.T) {
	as := testas.Start(t)
	const resource = "https://mcp.example.com/mcp"
	const url = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
	for _, c := range []testas.Client{
		{ID: "mcp-ok", Secret: "s", Scopes: []string{"read", "write", "tools"}, Audience: []string{resource}},
		{ID: "mcp-narrow", Secret: "s", Scopes: []string{"read"}, Audience: []string{resource}},
		{ID: "mcp-narrow-jwt", Secret: "s", Scopes: []string{"read"}, Audience: []string{resource}, JWTAccessTokens: true},
		{ID: "mcp-other-api", Secret: "s", Scopes: []string{"read", "write", "tools"}, Audience: []string{"https://other.example"}},
		{ID: "mcp-stranger", Secret: "s", Scopes: []string{"read", "write", "tools"}, Audience: []string{resource}},
	} {
		as.AddClient(c)
	}
	tc := startCaddy(t, prmSite(as, `		scopes read write
		any_scope tools
		clients mcp-ok mcp-narrow mcp-narrow-jwt mcp-other-api
		resource_metadata {
			resource `+resource+`
		}`))
	const realm = `Bearer realm="tokengate"`
	rm := `, resource_metadata="` + url + `"`
	for _, c := range []struct {
		name, authorization string
		status              int
		challenge, body     string
	}{
		{"no token", "", 401, realm + `, scope="read write tools"` + rm,
			`{"error_description":"bearer token required"}`},
		{"an unknown token", "Bearer not-a-token", 401,
			realm + `, error="invalid_token", error_description="the token is not active (expired, revoked, or unknown to the authorization server)", scope="read write tools"` + rm,
			`{"error":"invalid_token","error_description":"the token is not active (expired, revoked, or unknown to the authorization server)"}`},
		{"a token for another API", "Bearer " + as.Token(t, "mcp-other-api", "read", "write", "tools"), 401,
			realm + `, error="invalid_token", error_description="the token is not meant for this API (audience mismatch)", scope="read write tools"` + rm,
			`{"error":"invalid_token","error_description":"the token is not meant for this API (audience mismatch)"}`},
		{"a JWT lacking scopes", "Bearer " + as.Token(t, "mcp-narrow-jwt", "read"), 403,
			realm + `, error="insufficient_scope", error_description="the token lacks a required scope", scope="read write tools"` + rm,
			`{"error":"insufficient_scope","error_description":"the token lacks a required scope","scope":"read write tools"}`},
		{"an opaque token lacking scopes", "Bearer " + as.Token(t, "mcp-narrow", "read"), 403,
			realm + `, error="insufficient_scope", error_description="the token lacks a required scope", scope="read write tools"` + rm,
			`{"error":"insufficient_scope","error_description":"the token lacks a required scope","scope":"read write tools"}`},
		{"a client this route does not serve", "Bearer " + as.Token(t, "mcp-stranger", "read", "write", "tools"), 403,
			realm + `, error="unauthorized_client", error_description="the client this token was issued to may not use this API"` + rm,
			`{"error":"unauthorized_client","error_description":"the client this token was issued to may not use this API"}`},
		// Neither 401 nor 403: no metadata, as before.
		{"a malformed request", "Bearer a b", 400,
			realm + `, error="invalid_request", error_description="the Authorization header carries more than one token"`,
			`{"error":"invalid_request","error_description":"the Authorization header carries more than one token"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := tc.get("/mcp", c.authorization)
			r.expect(t, c.status, c.challenge, c.body)
			if c.status == 400 {
				return
			}
			p := challenge(t, r)
			if p["resource_metadata"] != url {
				t.Errorf("the SDK reads resource_metadata %q, want %q", p["resource_metadata"], url)
			}
			if c.status == 401 || strings.Contains(c.challenge, "insufficient_scope") {
				if p["scope"] != "read write tools" {
					t.Errorf("the SDK reads scope %q, want %q", p["scope"], "read write tools")
				}
			}
		})
	}
	if r := tc.get("/mcp", "Bearer "+as.Token(t, "mcp-ok", "read", "write", "tools")); r.status != 200 {
		t.Errorf("a good token: %d %q", r.status, r.body)
	}
}

// With DPoP on, the document says which proof algorithms the gateway
// verifies and (required) that unbound tokens are refused (RFC 9728 §2);
// with it off, neither member appears.
func TestResourceMetadataAdvertisesTheDPoPMode(t *testing.T) {
	as := testas.Start(t)
	const wk = "/.well-known/oauth-protected-resource"
	for _, c := range []struct {
		mode         string
		wantAlgs     bool
		wantRequired bool
	}{{"off", false, false}, {"optional", true, false}, {"required", true, true}} {
		t.Run(c.mode, func(t *testing.T) {
			tc := startCaddy(t, prmSite(as, "\t\tdpop "+c.mode+"\n\t\tresource_metadata {\n\t\t\tresource https://mcp.example.com\n\t\t}"))
			r := tc.get(wk, "")
			if r.status != http.StatusOK {
				t.Fatalf("status %d", r.status)
			}
			var doc map[string]any
			if err := json.Unmarshal([]byte(r.body), &doc); err != nil {
				t.Fatal(err)
			}
			algs, hasAlgs := doc["dpop_signing_alg_values_supported"].([]any)
			if hasAlgs != c.wantAlgs || c.wantAlgs && !slices.Contains(algs, any("ES256")) {
				t.Errorf("dpop_signing_alg_values_supported = %v, want present: %v (with ES256)", doc["dpop_signing_alg_values_supported"], c.wantAlgs)
			}
			if got, _ := doc["dpop_bound_access_tokens_required"].(bool); got != c.wantRequired {
				t.Errorf("dpop_bound_access_tokens_required = %v, want %v", doc["dpop_bound_access_tokens_required"], c.wantRequired)
			}
		})
	}
}
