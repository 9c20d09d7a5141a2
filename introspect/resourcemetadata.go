package introspect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/tokengate/tokengate/introspect/asclient"
	"github.com/tokengate/tokengate/introspect/claims"
)

// WellKnownResourcePath is where protected resource metadata lives (RFC 9728
// §3): on the resource's host, with the resource's path, if any, appended.
const WellKnownResourcePath = "/.well-known/oauth-protected-resource"

// ResourceMetadata is the protected resource metadata document of RFC 9728
// §2 that the gateway serves for the API it guards. A client that gets a 401
// reads it to learn which authorization server to ask, for what scopes, and
// which resource indicator (RFC 8707) to put in its token request: this is
// how MCP clients find their authorization server.
type ResourceMetadata struct {
	// Resource is the protected resource's identifier (RFC 9728 §1.2): an
	// absolute http(s) URL without query or fragment, normally the URL
	// clients use. It is also the audience the gateway enforces: a client
	// asks for a token with resource=<it> (RFC 8707 §2) and the token's aud
	// names it.
	Resource string `json:"resource"`
	// AuthorizationServers are the issuer identifiers (RFC 8414) of the
	// servers that issue tokens for the resource.
	AuthorizationServers []string `json:"authorization_servers,omitempty"`
	// ScopesSupported are the scopes a client may ask for to use the
	// resource.
	ScopesSupported []string `json:"scopes_supported,omitempty"`
	// BearerMethodsSupported are the token transports the gateway accepts
	// (RFC 9728 §2: header, body, query).
	BearerMethodsSupported []string `json:"bearer_methods_supported,omitempty"`
	// ResourceName is a human-readable name of the resource.
	ResourceName string `json:"resource_name,omitempty"`
	// ResourceDocumentation is a URL of developer documentation.
	ResourceDocumentation string `json:"resource_documentation,omitempty"`
	// DPoPSigningAlgValuesSupported are the proof algorithms the gateway
	// verifies, and DPoPBoundAccessTokensRequired says it refuses unbound
	// tokens (RFC 9728 §2, RFC 9449 §5.1): set from the route's dpop mode,
	// only when it is on.
	DPoPSigningAlgValuesSupported []string `json:"dpop_signing_alg_values_supported,omitempty"`
	DPoPBoundAccessTokensRequired bool     `json:"dpop_bound_access_tokens_required,omitempty"`
}

// WithDefaults fills what the operator left out, from the rest of the
// route's configuration: resource from the audience when that is exactly one
// value and a resource identifier (an http(s) URL), authorization_servers from the issuer, scopes_supported from the
// scopes the route requires (Policy.RequiredScopes), and
// bearer_methods_supported from the transports x accepts (always; it is not
// a setting of its own, so it cannot disagree with what the gateway does).
func (m ResourceMetadata) WithDefaults(issuer string, audience []string, p *Policy, x Extractor) ResourceMetadata {
	if m.Resource == "" && len(audience) == 1 && checkResourceURL(audience[0]) == nil {
		m.Resource = audience[0]
	}
	if len(m.AuthorizationServers) == 0 && issuer != "" {
		m.AuthorizationServers = []string{issuer}
	}
	if len(m.ScopesSupported) == 0 && p != nil {
		if s := p.RequiredScopes(); len(s) > 0 {
			m.ScopesSupported = s
		}
	}
	m.BearerMethodsSupported = x.BearerMethods()
	return m
}

// ResourceAudience is the audience the gateway enforces for a route with
// metadata about resource: the configured audience, or when none is
// configured, the resource itself. Tokens a client gets by following the
// metadata carry aud=resource (RFC 8707), so the two must agree; Check
// refuses a configured audience that does not name the resource.
func ResourceAudience(resource string, audience []string) []string {
	if len(audience) == 0 && resource != "" {
		return []string{resource}
	}
	return audience
}

// Check reports the first mistake in m (after WithDefaults), without I/O;
// audience is the audience the gateway enforces. Messages name the setting.
func (m ResourceMetadata) Check(audience []string) error {
	if m.Resource == "" {
		if len(audience) > 1 {
			return fmt.Errorf("resource is required: audience has %d values; set resource to the one clients use (the URL of the API)", len(audience))
		}
		return errors.New("resource is required: set it to the URL of the API (or make that URL the audience)")
	}
	if err := checkResourceURL(m.Resource); err != nil {
		return fmt.Errorf("resource: %w", err)
	}
	if !slices.Contains(audience, m.Resource) {
		return fmt.Errorf("resource %q is not one of audience (%s): clients get tokens for the resource (RFC 8707), which this audience would refuse; add it to audience or leave audience out", m.Resource, strings.Join(audience, " "))
	}
	if len(m.AuthorizationServers) == 0 {
		return errors.New("authorization_servers is required without issuer: clients must learn where to get tokens (RFC 9728 §2)")
	}
	for _, as := range m.AuthorizationServers {
		// The same rule as issuer: clients discover each one (RFC 8414).
		if _, err := asclient.MetadataURLs(as); err != nil {
			return fmt.Errorf("authorization_servers: %w", err)
		}
	}
	for _, s := range m.ScopesSupported {
		if !claims.IsScopeToken(s) {
			return fmt.Errorf("scopes_supported: %q is not a scope (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)", s)
		}
	}
	if m.ResourceDocumentation != "" {
		if err := checkHTTPURL(m.ResourceDocumentation); err != nil {
			return fmt.Errorf("resource_documentation: %w", err)
		}
	}
	return nil
}

// checkResourceURL applies RFC 9728 §1.2 to a resource identifier, plus one
// rule of ours: no query either (the RFC discourages one), so that the
// audience, the metadata URL and the URL clients use compare as plain
// strings.
func checkResourceURL(s string) error {
	if err := checkHTTPURL(s); err != nil {
		return err
	}
	u, _ := url.Parse(s)
	if u.Fragment != "" || strings.Contains(s, "#") {
		return fmt.Errorf("%q must not have a fragment (RFC 9728 §1.2)", s)
	}
	if u.RawQuery != "" || strings.Contains(s, "?") {
		return fmt.Errorf("%q must not have a query", s)
	}
	if u.User != nil {
		return fmt.Errorf("%q must not carry user information", s)
	}
	return nil
}

// URL is where the document is served (RFC 9728 §3.1): the well-known path
// inserted between the resource's host and its path, a lone terminating "/"
// after the host dropped. It is built from the configured resource only,
// never from a request's Host, so a client cannot be pointed elsewhere by a
// forged header. m must have passed Check.
func (m ResourceMetadata) URL() string {
	u, err := url.Parse(m.Resource)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host + m.Paths()[0]
}

// Paths are the request paths the document is answered at: first the
// path-suffixed form of §3.1 (the URL clients are given), then, for a
// resource with a path, the bare well-known path too, where clients that do
// not read the challenge's resource_metadata look first (older MCP clients
// do). Both carry the same document, whose resource is the configured one.
func (m ResourceMetadata) Paths() []string {
	u, err := url.Parse(m.Resource)
	if err != nil {
		return nil
	}
	p := u.EscapedPath()
	if p == "/" || p == "" {
		return []string{WellKnownResourcePath}
	}
	return []string{WellKnownResourcePath + p, WellKnownResourcePath}
}

// Document is the JSON document, ready to serve.
func (m ResourceMetadata) Document() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	// URLs read better without \u0026 for &; it is JSON either way.
	enc.SetEscapeHTML(false)
	_ = enc.Encode(m) // strings and string slices cannot fail
	return b.Bytes()
}

// BearerMethods are the token transports x accepts, named as RFC 9728 §2's
// bearer_methods_supported names them.
func (x Extractor) BearerMethods() []string {
	m := []string{"header"}
	if x.AllowForm {
		m = append(m, "body")
	}
	if x.AllowQuery {
		m = append(m, "query")
	}
	return m
}
