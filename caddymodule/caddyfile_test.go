package caddymodule

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestCaddyfileParsesEverySubdirective(t *testing.T) {
	t.Parallel()
	d := caddyfile.NewTestDispenser(`bearer_auth {
		realm api
		issuer https://as.example.com
		audience a1 a2
		scopes read write
		any_scope x y
		clients c1 c2
		introspect {
			endpoint https://as.example.com/introspect
			client_id gw
			client_secret {env.SECRET}
			auth_method client_secret_post
			timeout 2s
			max_concurrent 10
			introspect_jwt
		}
		jwt {
			jwks_url https://as.example.com/jwks
			algorithms RS256 ES256
			typ at+jwt JWT
			leeway 10s
			refresh_interval 30s
			allow_start_without_keys
		}
		cache {
			ttl 1m
			negative_ttl 10s
			max_entries 500
			redis redis://127.0.0.1:6379/0
			key_secret k
			redis_timeout 20ms
			stale_grace 2m
		}
		forward_claim sub X-User
		forward_claim realm_access.roles X-Roles
		strip_authorization
		allow_form_token
		allow_query_token
		max_token_length 4096
		retry_after 10s
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h)
	want := `{"realm":"api","issuer":"https://as.example.com","audience":["a1","a2"],"scopes":["read","write"],"any_scope":["x","y"],"clients":["c1","c2"],` +
		`"introspect":{"endpoint":"https://as.example.com/introspect","client_id":"gw","client_secret":"{env.SECRET}","auth_method":"client_secret_post","timeout":2000000000,"introspect_jwt":true,"max_concurrent":10},` +
		`"jwt":{"jwks_url":"https://as.example.com/jwks","algorithms":["RS256","ES256"],"typ":["at+jwt","JWT"],"leeway":10000000000,"refresh_interval":30000000000,"allow_start_without_keys":true},` +
		`"cache":{"ttl":60000000000,"negative_ttl":10000000000,"max_entries":500,"redis":"redis://127.0.0.1:6379/0","key_secret":"k","redis_timeout":20000000,"stale_grace":120000000000},` +
		`"forward_claims":[{"claim":"sub","header":"X-User"},{"claim":"realm_access.roles","header":"X-Roles"}],"strip_authorization":true,"allow_form_token":true,"allow_query_token":true,"max_token_length":4096,"retry_after":10000000000}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestCaddyfileErrorsNameTheSubdirective(t *testing.T) {
	t.Parallel()
	tests := []struct{ input, want string }{
		{`bearer_auth { jwks x }`, "unrecognized bearer_auth subdirective 'jwks'"},
		{`bearer_auth { jwt { jwks x } }`, "unrecognized jwt subdirective 'jwks'"},
		{`bearer_auth { introspect { secret x } }`, "unrecognized introspect subdirective 'secret'"},
		{`bearer_auth { cache { ttl soon } }`, "invalid ttl duration 'soon'"},
		{`bearer_auth { cache { max_entries -5 } }`, "invalid max_entries '-5'"},
		{`bearer_auth { realm a b }`, "realm takes exactly one value"},
		{`bearer_auth { realm a
			realm b }`, "realm already specified"},
		{"bearer_auth {\n scopes\n}", "scopes needs at least one value"},
		{"bearer_auth {\n forward_claim sub\n}", "forward_claim needs exactly two arguments"},
		{`bearer_auth { strip_authorization yes }`, "strip_authorization takes no arguments"},
		{`bearer_auth { jwt {
			}
			jwt {
			} }`, "jwt block already specified"},
		{`bearer_auth extra`, "wrong argument count"},
	}
	for _, tt := range tests {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.input, err, tt.want)
		}
	}
}

// TestValidateNamesTheBadSettingAndWhy is what `caddy validate` prints for a
// config that parses but cannot work.
func TestValidateNamesTheBadSettingAndWhy(t *testing.T) {
	t.Parallel()
	tests := []struct{ block, want string }{
		{`bearer_auth {
		}`, "configure introspect or jwt"},
		{`bearer_auth {
			jwt {
				jwks_file x.json
			}
		}`, "jwt: issuer is required"},
		{`bearer_auth {
			issuer https://as
			jwt {
				jwks_file x.json
			}
		}`, "jwt: audience is required"},
		{`bearer_auth {
			issuer https://as
			audience a
			jwt {
				jwks_file x.json
				algorithms HS256
			}
		}`, `jwt: algorithms: algorithm "HS256" is never accepted`},
		{`bearer_auth {
			issuer https://as
			audience a
			jwt {
				algorithms none
			}
		}`, `algorithm "none" is never accepted`},
		{`bearer_auth {
			introspect {
				client_id gw
				client_secret s
			}
		}`, "introspect: set endpoint, or issuer"},
		{`bearer_auth {
			introspect {
				endpoint https://as/introspect
				client_id gw
				client_secret {env.TOKENGATE_SURELY_UNSET}
			}
		}`, "needs client_secret (did an {env.*} or {file.*} placeholder resolve to nothing?)"},
		{`bearer_auth {
			introspect {
				endpoint https://as/introspect
				client_id gw
				client_secret s
				auth_method magic
			}
		}`, `auth_method "magic" is not supported`},
		{`bearer_auth {
			issuer as.example.com
			introspect {
				client_id gw
				client_secret s
			}
		}`, "issuer: issuer \"as.example.com\" is not an absolute http(s) URL"},
		{`bearer_auth {
			realm "a\"b"
			introspect {
				endpoint https://as/introspect
				client_id gw
				client_secret s
			}
		}`, "realm"},
		{`bearer_auth {
			introspect {
				endpoint https://as/introspect
				client_id gw
				client_secret s
			}
			forward_claim sub Authorization
		}`, "forward_claim 0: header Authorization cannot be set from a claim"},
		{`bearer_auth {
			introspect {
				endpoint https://as/introspect
				client_id gw
				client_secret s
			}
			cache {
				redis http://user:s3cretpw@127.0.0.1:6379
			}
		}`, "bearer_auth: cache: redis URL: not a redis://, rediss:// or unix:// URL"},
		// The cache's own rules, at validation rather than at provision.
		{`bearer_auth {
			introspect {
				endpoint https://as/introspect
				client_id gw
				client_secret s
			}
			cache {
				redis redis://127.0.0.1:6379?cluster=maybe
			}
		}`, `cluster="maybe", want cluster=true`},
	}
	for _, tt := range tests {
		cfg, err := adaptCaddyfile(fmt.Sprintf("{\n\tadmin off\n}\n:0 {\n%s\n}\n", tt.block))
		if err != nil {
			t.Fatalf("adapt: %v", err)
		}
		err = caddy.Validate(mustConfig(t, cfg))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("validate: err = %v\nwant %q", err, tt.want)
		}
	}
}

func mustConfig(t *testing.T, b []byte) *caddy.Config {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

func TestJSONConfigIsEqualInPower(t *testing.T) {
	t.Parallel()
	tc := startCaddy(t, `	respond "placeholder"`)
	// Load a native JSON config (no Caddyfile): the same demo setup.
	cfg := fmt.Sprintf(`{
	"admin": {"listen": %q, "config": {"persist": false}},
	"apps": {"http": {"servers": {"s": {"listen": ["127.0.0.1:%d"], "automatic_https": {"disable": true},
		"routes": [{"handle": [
			{"handler": "bearer_auth", "issuer": %q, "audience": [%q], "scopes": ["read"],
			 "jwt": {"jwks_file": "../demo/demo-jwks.json"},
			 "forward_claims": [{"claim": "client_id", "header": "X-Client"}]},
			{"handler": "static_response", "body": "json {http.auth.user.id} {http.request.header.X-Client}"}
		]}]}}}}
}`, tc.admin, tc.port, demoIssuer, demoAudience)
	if err := tc.loadJSON([]byte(cfg)); err != nil {
		t.Fatal(err)
	}
	tok, _ := mintToken(demoKey, demoIssuer, []string{demoAudience}, "read", "u1", "c1", time.Hour, time.Now())
	if r := tc.get("/", "Bearer "+tok); r.status != 200 || r.body != "json u1 c1" {
		t.Fatalf("got %d %q", r.status, r.body)
	}
	if r := tc.get("/", ""); r.status != 401 {
		t.Fatalf("no token: %d", r.status)
	}
}

func caddyValidate(t *testing.T, cfg []byte) error {
	t.Helper()
	return caddy.Validate(mustConfig(t, cfg))
}
