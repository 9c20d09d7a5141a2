package caddymodule

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestCaddyfileParsesTrustAndRequireClaim(t *testing.T) {
	d := caddyfile.NewTestDispenser(`bearer_auth {
		issuer https://old-idp.example.com
		audience orders-api
		jwt
		trust https://new-idp.example.com/realms/main {
			jwt {
				typ JWT
				refresh_interval 1m
			}
			audience orders
		}
		trust https://partner.example.com {
			introspect {
				client_id gw
				client_secret {env.PARTNER_SECRET}
			}
		}
		require_claim groups admin ops
		require_claim tenant 42
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h)
	want := `{"issuer":"https://old-idp.example.com","audience":["orders-api"],` +
		`"require_claims":[{"claim":"groups","values":["admin","ops"]},{"claim":"tenant","values":["42"]}],` +
		`"jwt":{},` +
		`"trust":[{"issuer":"https://new-idp.example.com/realms/main","audience":["orders"],"jwt":{"typ":["JWT"],"refresh_interval":60000000000}},` +
		`{"issuer":"https://partner.example.com","introspect":{"client_id":"gw","client_secret":"{env.PARTNER_SECRET}"}}]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestCaddyfileTrustErrorsNameTheSubdirective(t *testing.T) {
	for _, tt := range []struct{ input, want string }{
		{"bearer_auth {\n trust\n}", "trust needs the issuer identifier"},
		{`bearer_auth { trust https://a https://b }`, "trust takes exactly one issuer"},
		{`bearer_auth { trust https://a { keys x } }`, "unrecognized trust subdirective 'keys'"},
		{`bearer_auth { trust https://a { jwt { jwks x } } }`, "unrecognized jwt subdirective 'jwks'"},
		{"bearer_auth { trust https://a {\n jwt\n jwt\n } }", "trust https://a: jwt block already specified"},
		{"bearer_auth { trust https://a {\n audience x\n audience y\n } }", "audience already specified"},
		{"bearer_auth {\n require_claim groups\n}", "require_claim needs a claim and at least one value"},
		{"bearer_auth {\n require_claim\n}", "require_claim needs a claim and at least one value"},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.input, err, tt.want)
		}
	}
}

// What `caddy validate` says about a trust or require_claim that cannot
// work, before any network call.
func TestValidateNamesTheBadTrustBlock(t *testing.T) {
	const own = "issuer https://a.example\n\t\t\taudience api\n\t\t\tjwt {\n\t\t\t\tjwks_file x.json\n\t\t\t}"
	for _, tt := range []struct{ block, want string }{
		{`introspect {
				endpoint https://a.example/introspect
				client_id gw
				client_secret s
			}
			audience api
			trust https://b.example {
				jwt
			}`, "trust needs the route's own issuer"},
		{own + `
			trust https://a.example {
				jwt
			}`, "trust https://a.example: this issuer is already trusted by this route"},
		{own + `
			trust https://b.example {
				jwt
			}
			trust https://b.example {
				jwt
			}`, "trust https://b.example: this issuer is already trusted by this route"},
		{own + `
			trust https://b.example {
				audience other
			}`, "trust https://b.example: configure jwt or introspect"},
		{own + `
			trust b.example {
				jwt
			}`, `trust b.example: issuer: issuer "b.example" is not an absolute http(s) URL`},
		{own + `
			trust https://b.example {
				jwt {
					algorithms HS256
				}
			}`, `trust https://b.example: jwt: algorithms: algorithm "HS256" is never accepted`},
		{own + `
			trust https://b.example {
				introspect {
					client_id gw
				}
			}`, "trust https://b.example: introspect: auth_method client_secret_basic needs client_secret"},
		{own + `
			trust https://b.example {
				jwt {
					leeway 5s
				}
			}`, "trust https://b.example: jwt.leeway 5s differs from the route's leeway 30s"},
		{`issuer https://a.example
			introspect {
				client_id gw
				client_secret s
			}
			trust https://b.example {
				jwt
			}`, "trust https://b.example: jwt: audience is required"},
		{own + `
			require_claim .groups admin`, `require_claim 0: claim path ".groups" is not a claim name or a dotted path`},
	} {
		cfg, err := adaptCaddyfile(fmt.Sprintf("{\n\tadmin off\n}\n:0 {\n\tbearer_auth {\n\t\t\t%s\n\t}\n}\n", tt.block))
		if err != nil {
			t.Fatalf("adapt: %v", err)
		}
		err = caddy.Validate(mustConfig(t, cfg))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("validate: err = %v\nwant %q", err, tt.want)
		}
	}
}

// The defaults in force show in the trust blocks as they do in the route's
// own (the admin API's /config, caddy adapt after provisioning), and every
// trusted issuer inherits the route's audience unless it names its own.
func TestTrustBlocksGetTheRoutesDefaults(t *testing.T) {
	t.Setenv("TOKENGATE_TEST_PARTNER_SECRET", "partner-secret\n")
	h := Handler{Issuer: "https://a.example", Audience: []string{"api"}, JWT: &JWTConfig{JWKSFile: "a.json"},
		Trust: []TrustConfig{
			{Issuer: "https://b.example", JWT: &JWTConfig{JWKSFile: "b.json"}},
			{Issuer: "https://c.example", Audience: []string{"c-api"}, Introspect: &IntrospectConfig{
				Endpoint: "https://c.example/introspect", ClientID: "gw", ClientSecret: "{env.TOKENGATE_TEST_PARTNER_SECRET}"}},
		}}
	if err := h.prepare(); err != nil {
		t.Fatal(err)
	}
	b, c := h.Trust[0], h.Trust[1]
	if b.JWT.RefreshInterval != h.JWT.RefreshInterval || b.JWT.Leeway != h.Leeway || b.JWT.Leeway == 0 {
		t.Errorf("trust jwt defaults: refresh %v leeway %v", b.JWT.RefreshInterval, b.JWT.Leeway)
	}
	if c.Introspect.AuthMethod != "client_secret_basic" || c.Introspect.Timeout == 0 || c.Introspect.MaxConcurrent == 0 {
		t.Errorf("trust introspect defaults: %+v", c.Introspect)
	}
	if c.Introspect.ClientSecret != "partner-secret" {
		t.Errorf("placeholder in a trust block: %q", c.Introspect.ClientSecret)
	}
	cfgs := h.issuerConfigs()
	if len(cfgs) != 3 || cfgs[1].Issuer != "https://b.example" || strings.Join(cfgs[1].Audience, " ") != "api" ||
		strings.Join(cfgs[2].Audience, " ") != "c-api" || cfgs[2].Cache != cfgs[0].Cache || cfgs[2].Leeway != cfgs[0].Leeway {
		t.Errorf("issuer configs: %+v", cfgs)
	}
	if ns := cfgs[1].WithDefaults().RedisNamespace(); ns == cfgs[0].WithDefaults().RedisNamespace() {
		t.Error("two issuers share a Redis namespace")
	}
	// One pool entry per issuer settings: a trusted issuer configured like
	// some route's own issuer shares that route's validator.
	kb, _ := h.settingsKey(b.Issuer, cfgs[1].Audience, b.Introspect, b.JWT)
	other := Handler{Issuer: "https://b.example", Audience: []string{"api"}, JWT: &JWTConfig{JWKSFile: "b.json"}}
	if err := other.prepare(); err != nil {
		t.Fatal(err)
	}
	if ko, _ := other.validationKey(); ko != kb {
		t.Error("the same issuer settings give two pool keys")
	}
	if ka, _ := h.validationKey(); ka == kb {
		t.Error("two issuers share a pool key")
	}
}
