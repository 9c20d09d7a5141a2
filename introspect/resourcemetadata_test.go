package introspect

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// RFC 9728 §3.1: the well-known path goes between the host and the
// resource's path; a resource with a path is also answered at the bare
// well-known path.
func TestResourceMetadataURLAndPaths(t *testing.T) {
	for _, tc := range []struct {
		resource, url string
		paths         []string
	}{
		{"https://api.example.com", "https://api.example.com/.well-known/oauth-protected-resource",
			[]string{"/.well-known/oauth-protected-resource"}},
		{"https://api.example.com/", "https://api.example.com/.well-known/oauth-protected-resource",
			[]string{"/.well-known/oauth-protected-resource"}},
		{"https://api.example.com/mcp", "https://api.example.com/.well-known/oauth-protected-resource/mcp",
			[]string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"}},
		{"http://127.0.0.1:8080/v1/tools/", "http://127.0.0.1:8080/.well-known/oauth-protected-resource/v1/tools/",
			[]string{"/.well-known/oauth-protected-resource/v1/tools/", "/.well-known/oauth-protected-resource"}},
	} {
		m := ResourceMetadata{Resource: tc.resource}
		if got := m.URL(); got != tc.url {
			t.Errorf("%s: URL %s, want %s", tc.resource, got, tc.url)
		}
		if got := m.Paths(); !slices.Equal(got, tc.paths) {
			t.Errorf("%s: paths %q, want %q", tc.resource, got, tc.paths)
		}
	}
}

func TestResourceMetadataDefaults(t *testing.T) {
	p := &Policy{Scopes: []string{"read"}, AnyScope: []string{"tools", "read"}}
	m := ResourceMetadata{}.WithDefaults("https://as.example", []string{"https://api.example/mcp"}, p, Extractor{})
	want := ResourceMetadata{Resource: "https://api.example/mcp", AuthorizationServers: []string{"https://as.example"},
		ScopesSupported: []string{"read", "tools"}, BearerMethodsSupported: []string{"header"}}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("defaults\n got %+v\nwant %+v", m, want)
	}
	// Explicit values stay; bearer methods always follow the transports.
	explicit := ResourceMetadata{Resource: "https://api.example/a", AuthorizationServers: []string{"https://other.example"},
		ScopesSupported: []string{"x"}, ResourceName: "A", ResourceDocumentation: "https://docs.example/a",
		BearerMethodsSupported: []string{"query"}}
	m = explicit.WithDefaults("https://as.example", []string{"https://api.example/b"}, p, Extractor{AllowForm: true, AllowQuery: true})
	explicit.BearerMethodsSupported = []string{"header", "body", "query"}
	if !reflect.DeepEqual(m, explicit) {
		t.Errorf("explicit\n got %+v\nwant %+v", m, explicit)
	}
	// No single audience to take the resource from, no issuer, no scopes.
	m = ResourceMetadata{}.WithDefaults("", []string{"https://a.example", "https://b.example"}, &Policy{}, Extractor{})
	if m.Resource != "" || m.AuthorizationServers != nil || m.ScopesSupported != nil {
		t.Errorf("nothing to default from: %+v", m)
	}
	// One audience that is not a URL is not a resource identifier.
	if m = (ResourceMetadata{}).WithDefaults("", []string{"orders-api"}, &Policy{}, Extractor{}); m.Resource != "" {
		t.Errorf("resource %q taken from a non-URL audience", m.Resource)
	}
	if got := ResourceAudience("https://api.example/mcp", nil); !slices.Equal(got, []string{"https://api.example/mcp"}) {
		t.Errorf("audience defaults to %q, want the resource", got)
	}
	if got := ResourceAudience("https://api.example/mcp", []string{"x", "https://api.example/mcp"}); !slices.Equal(got, []string{"x", "https://api.example/mcp"}) {
		t.Errorf("configured audience replaced: %q", got)
	}
}

func TestResourceMetadataCheck(t *testing.T) {
	good := ResourceMetadata{Resource: "https://api.example/mcp", AuthorizationServers: []string{"https://as.example"}}
	if err := good.Check([]string{"https://api.example/mcp"}); err != nil {
		t.Fatalf("good metadata refused: %v", err)
	}
	for _, tc := range []struct {
		name     string
		mod      func(*ResourceMetadata)
		audience []string
		want     string
	}{
		{"no resource", func(m *ResourceMetadata) { m.Resource = "" }, []string{"a", "b"}, "resource is required: audience has 2 values"},
		{"relative resource", func(m *ResourceMetadata) { m.Resource = "/mcp" }, []string{"/mcp"}, "not an absolute http(s) URL"},
		{"urn resource", func(m *ResourceMetadata) { m.Resource = "urn:api" }, []string{"urn:api"}, "not an absolute http(s) URL"},
		{"fragment", func(m *ResourceMetadata) { m.Resource = "https://api.example/mcp#x" }, []string{"https://api.example/mcp#x"}, "fragment"},
		{"query", func(m *ResourceMetadata) { m.Resource = "https://api.example/mcp?v=1" }, []string{"https://api.example/mcp?v=1"}, "query"},
		{"resource not in audience", func(*ResourceMetadata) {}, []string{"api"}, `resource "https://api.example/mcp" is not one of audience (api)`},
		{"no authorization server", func(m *ResourceMetadata) { m.AuthorizationServers = nil }, nil, "authorization_servers is required"},
		{"bad authorization server", func(m *ResourceMetadata) { m.AuthorizationServers = []string{"as.example"} }, nil, "authorization_servers: issuer"},
		{"bad scope", func(m *ResourceMetadata) { m.ScopesSupported = []string{"a b"} }, nil, `scopes_supported: "a b"`},
		{"bad documentation URL", func(m *ResourceMetadata) { m.ResourceDocumentation = "docs" }, nil, "resource_documentation"},
	} {
		m := good
		tc.mod(&m)
		aud := tc.audience
		if aud == nil {
			aud = []string{m.Resource}
		}
		err := m.Check(aud)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// The document is RFC 9728 §2 JSON: the members the gateway fills, and no
// empty optional ones.
func TestResourceMetadataDocument(t *testing.T) {
	m := ResourceMetadata{Resource: "https://api.example/mcp", AuthorizationServers: []string{"https://as.example"},
		BearerMethodsSupported: []string{"header"}, ResourceDocumentation: "https://docs.example/?a=1&b=2"}
	var got map[string]any
	if err := json.Unmarshal(m.Document(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"resource": "https://api.example/mcp", "authorization_servers": []any{"https://as.example"},
		"bearer_methods_supported": []any{"header"}, "resource_documentation": "https://docs.example/?a=1&b=2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("document %v, want %v", got, want)
	}
	if strings.Contains(string(m.Document()), `\u0026`) {
		t.Errorf("document escapes & in URLs: %s", m.Document())
	}
}
