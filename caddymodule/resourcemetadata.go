package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tokengate/tokengate/introspect"
)

// The glue of RFC 9728 protected resource metadata and RFC 9470 step-up:
// config, defaults and checks (the rules are introspect's), and answering
// the metadata requests. The challenge parameters are written with every
// other one, in response.go.

// ResourceMetadataConfig is the RFC 9728 protected resource metadata the
// handler serves. Omitted fields default from the rest of the handler's
// config; bearer_methods_supported always lists the transports it accepts
// (header, plus body with allow_form_token and query with
// allow_query_token).
type ResourceMetadataConfig struct {
	// The resource identifier: the absolute http(s) URL clients use (no
	// query or fragment). It is the audience the handler enforces: it must
	// be one of audience, and audience defaults to it. Default: the
	// audience, when that is exactly one such URL.
	Resource string `json:"resource,omitempty"`
	// Issuer identifiers of the authorization servers clients get tokens
	// from. Default: issuer.
	AuthorizationServers []string `json:"authorization_servers,omitempty"`
	// Scopes clients may ask for. Default: scopes and any_scope.
	ScopesSupported []string `json:"scopes_supported,omitempty"`
	// A human-readable name of the API. Default: none.
	ResourceName string `json:"resource_name,omitempty"`
	// The URL of the API's developer documentation. Default: none.
	ResourceDocumentation string `json:"resource_documentation,omitempty"`
}

// servedMetadata is what ServeHTTP needs of the metadata, built once.
type servedMetadata struct {
	doc    []byte
	length string
	paths  []string
	// url is the document's URL, as challenges name it (RFC 9728 §5.1).
	url string
}

func (c *ResourceMetadataConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "resource":
			err = oneString(d, &c.Resource)
		case "authorization_servers":
			err = stringList(d, &c.AuthorizationServers)
		case "scopes_supported":
			err = stringList(d, &c.ScopesSupported)
		case "resource_name":
			err = oneString(d, &c.ResourceName)
		case "resource_documentation":
			err = oneString(d, &c.ResourceDocumentation)
		default:
			return d.Errf("unrecognized resource_metadata subdirective '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *ResourceMetadataConfig) metadata() introspect.ResourceMetadata {
	return introspect.ResourceMetadata{
		Resource:              c.Resource,
		AuthorizationServers:  c.AuthorizationServers,
		ScopesSupported:       c.ScopesSupported,
		ResourceName:          c.ResourceName,
		ResourceDocumentation: c.ResourceDocumentation,
	}
}

// applyResourceMetadataDefaults resolves the metadata's {env.*} and {file.*}
// placeholders and fills its defaults (introspect.ResourceMetadata's
// WithDefaults), writing them back so that the JSON a user reads shows them;
// and makes the resource the audience when none is configured. It runs
// before the validator config is built: the audience is part of it.
func (h *Handler) applyResourceMetadataDefaults() {
	c := h.ResourceMetadata
	if c == nil {
		return
	}
	repl := caddy.NewReplacer()
	c.Resource = repl.ReplaceAll(c.Resource, "")
	for i, as := range c.AuthorizationServers {
		c.AuthorizationServers[i] = repl.ReplaceAll(as, "")
	}
	c.ResourceDocumentation = repl.ReplaceAll(c.ResourceDocumentation, "")
	m := c.metadata().WithDefaults(h.Issuer, h.Audience, &introspect.Policy{Scopes: h.Scopes, AnyScope: h.AnyScope}, h.transports())
	c.Resource, c.AuthorizationServers, c.ScopesSupported = m.Resource, m.AuthorizationServers, m.ScopesSupported
	h.Audience = introspect.ResourceAudience(m.Resource, h.Audience)
}

// validateStepUpAndMetadata is Validate's part for acr_values, max_age and
// resource_metadata.
func (h *Handler) validateStepUpAndMetadata() error {
	if err := introspect.CheckStepUp(h.ACRValues, time.Duration(h.MaxAge)); err != nil {
		return fmt.Errorf("bearer_auth: %w", err)
	}
	if c := h.ResourceMetadata; c != nil {
		if err := c.metadata().Check(h.Audience); err != nil {
			return fmt.Errorf("bearer_auth: resource_metadata: %w", err)
		}
	}
	return nil
}

// prepareResourceMetadata builds what ServeHTTP serves and the challenges
// name, from the validated config.
func (h *Handler) prepareResourceMetadata() {
	h.prm, h.requiredScope = nil, ""
	m := h.resourceMetadata()
	if m == nil {
		return
	}
	doc := m.Document()
	h.prm = &servedMetadata{doc: doc, length: strconv.Itoa(len(doc)), paths: m.Paths(), url: m.URL()}
	h.requiredScope = scopeValue(h.policy.RequiredScope())
}

// resourceMetadata is the document this handler serves, or nil.
func (h *Handler) resourceMetadata() *introspect.ResourceMetadata {
	if h.ResourceMetadata == nil {
		return nil
	}
	m := h.ResourceMetadata.metadata().WithDefaults(h.Issuer, h.Audience, &h.policy, h.transports())
	// What DPoP the route enforces is a fact of its dpop setting, not a
	// metadata setting of its own, so the two cannot disagree.
	if g := h.dpop; g != nil && g.mode != dpopOff {
		m.DPoPSigningAlgValuesSupported = g.verifier.AllowedAlgorithms()
		m.DPoPBoundAccessTokensRequired = g.mode == dpopRequired
	}
	return &m
}

func (h *Handler) transports() introspect.Extractor {
	return introspect.Extractor{AllowForm: h.AllowFormToken, AllowQuery: h.AllowQueryToken}
}

// serveResourceMetadata answers a request for the metadata document, and
// reports whether it did. It runs before the token is looked at: the
// document is how a client without a token learns where to get one, and
// bearer_auth usually guards the whole site, the well-known path included.
// It is public and the same for everyone, so any origin may read it (browser
// clients fetch it; RFC 9728 §3 leaves CORS to the resource server).
func (h *Handler) serveResourceMetadata(w http.ResponseWriter, r *http.Request) bool {
	m := h.prm
	if !slices.Contains(m.paths, r.URL.EscapedPath()) {
		return false
	}
	hdr := w.Header()
	hdr.Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Content-Length", m.length)
		// Public and the same for every caller; a reload may change it.
		hdr.Set("Cache-Control", "public, max-age=300")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(m.doc)
		}
	case http.MethodOptions:
		// A CORS preflight (a browser client sending MCP-Protocol-Version,
		// say). Nothing here is credentialed, so "*" is enough.
		hdr.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		hdr.Set("Access-Control-Allow-Headers", "*")
		hdr.Set("Access-Control-Max-Age", "86400")
		hdr.Set("Allow", "GET, HEAD, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
	default:
		hdr.Set("Allow", "GET, HEAD, OPTIONS")
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
	if c := h.logger.Check(zapcore.DebugLevel, "resource metadata request"); c != nil {
		c.Write(zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.String("remote_ip", remoteIP(r)))
	}
	return true
}

// authTimeString is {http.auth.bearer.auth_time}: Unix seconds, or "".
func authTimeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.Unix(), 10)
}
