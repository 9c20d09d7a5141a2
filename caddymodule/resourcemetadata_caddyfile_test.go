package caddymodule

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestCaddyfileParsesStepUpAndResourceMetadata(t *testing.T) {
	d := caddyfile.NewTestDispenser(`bearer_auth {
		acr_values urn:example:gold phr
		max_age 15m
		resource_metadata {
			resource https://mcp.example.com/mcp
			authorization_servers https://as.example.com https://as2.example.com
			scopes_supported tools:read tools:call
			resource_name "Example MCP"
			resource_documentation https://docs.example.com/mcp
		}
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h)
	want := `{"acr_values":["urn:example:gold","phr"],"max_age":900000000000,"resource_metadata":{"resource":"https://mcp.example.com/mcp",` +
		`"authorization_servers":["https://as.example.com","https://as2.example.com"],"scopes_supported":["tools:read","tools:call"],` +
		`"resource_name":"Example MCP","resource_documentation":"https://docs.example.com/mcp"}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// A bare resource_metadata takes every default.
	h = Handler{}
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("bearer_auth {\n resource_metadata\n}")); err != nil || h.ResourceMetadata == nil {
		t.Errorf("bare resource_metadata: %v %+v", err, h.ResourceMetadata)
	}
}

func TestCaddyfileStepUpAndResourceMetadataErrors(t *testing.T) {
	for _, tt := range []struct{ input, want string }{
		{"bearer_auth {\n acr_values\n}", "acr_values needs at least one value"},
		{"bearer_auth {\n acr_values a\n acr_values b\n}", "acr_values already specified"},
		{"bearer_auth {\n max_age\n}", "max_age needs a duration"},
		{"bearer_auth {\n max_age soon\n}", "invalid max_age duration 'soon'"},
		{"bearer_auth {\n max_age 0s\n}", "invalid max_age duration '0s'"},
		{"bearer_auth {\n max_age 1h 2h\n}", "max_age takes exactly one value"},
		{"bearer_auth {\n resource_metadata x\n}", "wrong argument count"},
		{"bearer_auth {\n resource_metadata {\n resource_url x\n }\n}", "unrecognized resource_metadata subdirective 'resource_url'"},
		{"bearer_auth {\n resource_metadata {\n resource a b\n }\n}", "resource takes exactly one value"},
		{"bearer_auth {\n resource_metadata {\n resource a\n resource b\n }\n}", "resource already specified"},
		{"bearer_auth {\n resource_metadata {\n authorization_servers\n }\n}", "authorization_servers needs at least one value"},
		{"bearer_auth {\n resource_metadata\n resource_metadata\n}", "resource_metadata block already specified"},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.input, err, tt.want)
		}
	}
}

// What `caddy validate` says about resource_metadata and step-up settings
// that parse but cannot work.
func TestValidateResourceMetadataAndStepUp(t *testing.T) {
	const introspect = `
			introspect {
				endpoint https://as.example.com/introspect
				client_id gw
				client_secret s
			}`
	for _, tt := range []struct{ block, want string }{
		{`resource_metadata {
				resource /mcp
			}`, `resource_metadata: resource: "/mcp" is not an absolute http(s) URL`},
		{`issuer https://as.example.com
			resource_metadata {
				resource https://mcp.example.com/mcp#frag
			}`, "must not have a fragment"},
		{`issuer https://as.example.com
			audience api
			resource_metadata {
				resource https://mcp.example.com/mcp
			}`, `resource_metadata: resource "https://mcp.example.com/mcp" is not one of audience (api)`},
		{`issuer https://as.example.com
			audience https://a.example.com https://b.example.com
			resource_metadata`, "resource_metadata: resource is required: audience has 2 values"},
		{`issuer https://as.example.com
			resource_metadata`, "resource_metadata: resource is required: set it to the URL of the API"},
		{`issuer https://as.example.com
			audience orders-api
			resource_metadata`, "resource_metadata: resource is required: set it to the URL of the API (or make that URL the audience)"},
		{`resource_metadata {
				resource https://mcp.example.com/mcp
			}`, "resource_metadata: authorization_servers is required without issuer"},
		{`issuer https://as.example.com
			resource_metadata {
				resource https://mcp.example.com
				authorization_servers as.example.com
			}`, `resource_metadata: authorization_servers: issuer "as.example.com" is not an absolute http(s) URL`},
		{`issuer https://as.example.com
			resource_metadata {
				resource https://mcp.example.com
				resource_documentation docs
			}`, "resource_metadata: resource_documentation"},
		{`acr_values "gold silver"`, `acr_values: "gold silver" cannot be sent in a challenge`},
	} {
		cfg, err := adaptCaddyfile(fmt.Sprintf("{\n\tadmin off\n}\n:0 {\n\tbearer_auth {\n\t\t\t%s\n%s\n\t}\n}\n", tt.block, introspect))
		if err != nil {
			t.Fatalf("adapt: %v", err)
		}
		err = caddyValidate(t, cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s:\nerr = %v\nwant %q", tt.block, err, tt.want)
		}
	}
}

// The defaults are written back into the config, so that what caddy adapt
// and the admin API show is what is in force: the resource is the audience.
func TestResourceMetadataDefaultsAreWrittenBack(t *testing.T) {
	h := Handler{Issuer: "https://as.example.com", Scopes: []string{"read"},
		Introspect:       &IntrospectConfig{Endpoint: "https://as.example.com/i", ClientID: "gw", ClientSecret: "s"},
		ResourceMetadata: &ResourceMetadataConfig{Resource: "https://mcp.example.com/mcp"}}
	if err := h.prepare(); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(struct {
		Audience []string                `json:"audience"`
		RM       *ResourceMetadataConfig `json:"resource_metadata"`
	}{h.Audience, h.ResourceMetadata})
	want := `{"audience":["https://mcp.example.com/mcp"],"resource_metadata":{"resource":"https://mcp.example.com/mcp",` +
		`"authorization_servers":["https://as.example.com"],"scopes_supported":["read"]}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
