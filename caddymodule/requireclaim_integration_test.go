package caddymodule

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/testas"
)

// require_claim against a real authorization server's tokens — JWTs
// verified locally and opaque tokens introspected — with the claims the
// server puts in them.

// claimUsers are the people behind the tokens: one client each, with the
// claims its tokens carry.
var claimUsers = map[string]map[string]any{
	// groups is an array holding admin; tenant a JSON number; a nested org.
	"alice": {"groups": []any{"staff-9c41", "admin"}, "tenant": 42, "org": map[string]any{"unit": map[string]any{"code": 7}}},
	// groups without admin; tenant the decimal string of the number.
	"bob": {"groups": []any{"staff-9c41"}, "tenant": "42", "org": map[string]any{"unit": map[string]any{"code": "7"}}},
	// groups a single string rather than an array; other numbers.
	"carol": {"groups": "admin", "tenant": 43, "org": map[string]any{"unit": map[string]any{"code": 8}}},
	// none of the claims at all.
	"dave": {},
	// a tenant that only looks like 42, and an org without the unit.
	"erin": {"tenant": "042", "org": map[string]any{"id": "acme"}},
}

func claimClients() []testas.Client {
	var out []testas.Client
	for name, claims := range claimUsers {
		for _, jwt := range []bool{true, false} {
			id := name + "-opaque"
			if jwt {
				id = name + "-jwt"
			}
			out = append(out, testas.Client{ID: id, Secret: "s", Scopes: []string{"read"}, JWTAccessTokens: jwt,
				Audience: []string{"svc-jwt"}, Claims: claims})
		}
	}
	return out
}

// claimSite has one path per requirement. The three bearer_auth blocks
// share their validation settings, so they share one validator and its
// cache: one cached decision per token, judged by each route's policy.
func claimSite(as *testas.Server) string {
	block := func(path, requirement string) string {
		return fmt.Sprintf(`	handle %s {
		bearer_auth {
			issuer %s
			audience svc-jwt
			jwt {
				typ JWT
			}
			introspect {
				client_id %s
				client_secret %s
			}
			%s
		}
		respond "ok {http.auth.user.id}"
	}
`, path, as.Issuer(), testas.GatewayID, testas.GatewaySecret, requirement)
	}
	return block("/groups", "require_claim groups admin") +
		block("/tenant", "require_claim tenant 42") +
		block("/nested", "require_claim org.unit.code 7") +
		block("/all", "require_claim groups admin\n\t\t\trequire_claim tenant 42 43")
}

func TestRequireClaimOnJWTAndIntrospectionDecisions(t *testing.T) {
	as := testas.Start(t, testas.WithClients(claimClients()...))
	tc := startCaddy(t, claimSite(as))

	const (
		missing = "the token lacks the required claim "
		wrong   = "the token's claim "
		wrongTo = " has none of the required values"
	)
	forbidden := func(desc string) (string, string) {
		return `Bearer realm="tokengate", error="insufficient_scope", error_description="` + desc + `"`,
			`{"error":"insufficient_scope","error_description":"` + desc + `"}`
	}
	cases := []struct {
		name, user, path string
		status           int
		desc             string // for 403
	}{
		{"array holding the value", "alice", "/groups", 200, ""},
		{"array without the value", "bob", "/groups", 403, wrong + "groups" + wrongTo},
		{"a single string equal to the value", "carol", "/groups", 200, ""},
		{"missing claim", "dave", "/groups", 403, missing + "groups"},
		{"number equal to the decimal string", "alice", "/tenant", 200, ""},
		{"string equal to the string", "bob", "/tenant", 200, ""},
		{"another number", "carol", "/tenant", 403, wrong + "tenant" + wrongTo},
		{"a string that is not the number's spelling", "erin", "/tenant", 403, wrong + "tenant" + wrongTo},
		{"missing number claim", "dave", "/tenant", 403, missing + "tenant"},
		{"nested path, number", "alice", "/nested", 200, ""},
		{"nested path, string", "bob", "/nested", 200, ""},
		{"nested path, wrong value", "carol", "/nested", 403, wrong + "org.unit.code" + wrongTo},
		{"nested path, the parent without the child", "erin", "/nested", 403, missing + "org.unit.code"},
		{"nested path, no parent", "dave", "/nested", 403, missing + "org.unit.code"},
		{"all requirements hold", "alice", "/all", 200, ""},
		{"all requirements hold, one of several values", "carol", "/all", 200, ""},
		{"the first of two fails", "bob", "/all", 403, wrong + "groups" + wrongTo},
	}
	for _, kind := range []string{"jwt", "opaque"} {
		tokens := map[string]string{}
		for user := range claimUsers {
			tokens[user] = as.Token(t, user+"-"+kind, "read")
		}
		introspected := as.IntrospectionCalls()
		// Twice: the second round is served from the cache, and the
		// requirement still decides (the decision is cached, not the
		// verdict).
		for round := 1; round <= 2; round++ {
			for _, c := range cases {
				t.Run(fmt.Sprintf("%s/%s/round %d", kind, c.name, round), func(t *testing.T) {
					r := tc.get(c.path, "Bearer "+tokens[c.user])
					if c.status == 200 {
						r.expect(t, 200, "", "ok "+c.user+"-"+kind)
						return
					}
					www, body := forbidden(c.desc)
					r.expect(t, c.status, www, body)
				})
			}
		}
		want := 0
		if kind == "opaque" {
			want = len(claimUsers) // one introspection per token, for every path and round
		}
		if n := as.IntrospectionCalls() - introspected; n != want {
			t.Errorf("%s: %d introspection calls, want %d", kind, n, want)
		}
	}
	// Claim values never reach the log (the rejections name the claim).
	if logs := tc.logs(); strings.Contains(logs, "staff-9c41") {
		t.Error("a claim value is in the log")
	}
}
