// Package caddymodule is the Caddy glue of tokengate: module registration,
// JSON and Caddyfile config, provisioning, ServeHTTP and the RFC 6750
// responses, placeholders, metrics, the admin API and CLI commands. It decides
// nothing about tokens itself; package introspect does.
package caddymodule

import (
	"net/http"
	"net/textproto"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/introspect/upstreamtoken"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler requires a valid OAuth 2.0 bearer token (RFC 6750) on every request
// it handles. Tokens are introspected (RFC 7662) or verified locally as JWT
// access tokens (RFC 9068), cached by a hash of the token, and checked against
// the route's scopes, audience, clients and claim requirements. With trust,
// tokens of several authorization servers are accepted, each checked only
// with its own issuer's keys or introspection.
//
// Rejections are written by the handler itself: 400 invalid_request (413 for
// a form body over the bound), 401 (with or without invalid_token), 403
// insufficient_scope or unauthorized_client, and 503 with Retry-After when
// the authorization server cannot be asked. Each carries a WWW-Authenticate challenge, a JSON body and
// Cache-Control: no-store, and sets {http.auth.bearer.error} and
// {http.auth.bearer.error_description}.
//
// On success it sets {http.auth.user.id} (sub, else client_id),
// {http.auth.bearer.client_id}, {http.auth.bearer.scope},
// {http.auth.bearer.acr}, {http.auth.bearer.auth_time} (Unix seconds), and
// {http.auth.bearer.claims.<name>} (dotted paths reach nested claims).
//
// With upstream_token, the upstream gets a gateway-signed JWT instead of the
// caller's token, and the handler serves that key's JWKS at jwks_path to
// anyone.
// With acr_values or max_age, a good token whose user authentication does
// not meet them gets 401 insufficient_user_authentication (RFC 9470). With
// resource_metadata, the handler itself answers the RFC 9728 metadata
// requests, without a token.
type Handler struct {
	// The realm in the WWW-Authenticate challenge. Default: "tokengate".
	Realm string `json:"realm,omitempty"`
	// The authorization server's issuer identifier. Used for discovery of the
	// introspection endpoint and jwks_uri (RFC 8414, then OpenID Connect), and
	// as the required iss of JWT access tokens.
	Issuer string `json:"issuer,omitempty"`
	// At least one of these must be in the token's aud. Required with jwt
	// (RFC 9068 §4); optional for introspection.
	Audience []string `json:"audience,omitempty"`
	// Every one of these scopes is required (403 insufficient_scope).
	Scopes []string `json:"scopes,omitempty"`
	// At least one of these scopes is required (403 insufficient_scope).
	AnyScope []string `json:"any_scope,omitempty"`
	// Only tokens issued to these client_ids pass (403 unauthorized_client).
	Clients []string `json:"clients,omitempty"`
	// Step-up (RFC 9470): the token's acr must be one of these, else 401
	// insufficient_user_authentication asking for them (acr_values).
	ACRValues []string `json:"acr_values,omitempty"`
	// Step-up (RFC 9470): the user must have authenticated (auth_time) at
	// most this long ago, else 401 insufficient_user_authentication with
	// max_age. Default: no bound.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
	// Serve RFC 9728 protected resource metadata, and name it in every
	// 401 and 403 challenge, so that clients (MCP clients among them) find
	// the authorization server by themselves. Default: off.
	ResourceMetadata *ResourceMetadataConfig `json:"resource_metadata,omitempty"`
	// Claim values a token must have, all of them (403 insufficient_scope,
	// naming the claim). Checked on every request, cached decisions
	// included.
	RequireClaims []RequireClaim `json:"require_claims,omitempty"`

	// RFC 7662 introspection. Opaque tokens need it.
	Introspect *IntrospectConfig `json:"introspect,omitempty"`
	// Local verification of JWT access tokens.
	JWT *JWTConfig `json:"jwt,omitempty"`
	// Further authorization servers whose tokens this route accepts, each
	// checked only with its own keys or introspection. A JWT is routed by
	// its iss; opaque tokens go to the first issuer (issuer, then these in
	// order) that has introspect. Requires issuer. Default: none.
	Trust []TrustConfig `json:"trust,omitempty"`
	// The decision cache.
	Cache *CacheConfig `json:"cache,omitempty"`

	// Claims copied into upstream request headers. A client-supplied header
	// of the same name is always removed first.
	ForwardClaims []ForwardClaim `json:"forward_claims,omitempty"`
	// Remove the caller's token before the request goes upstream: the
	// Authorization header, or the access_token pair of the query or form
	// body it came in (every other byte stays as sent; a shorter body gets
	// its Content-Length). Default: false (the upstream sees the token).
	StripAuthorization bool `json:"strip_authorization,omitempty"`
	// Also accept the token as an access_token form-body parameter (RFC 6750
	// §2.2). Every application/x-www-form-urlencoded body (any method) is
	// then read whole and parsed as upstreams parse it, so that no second
	// token reaches the upstream unchecked: over 64 KiB is 413;
	// a repeated access_token, a name frameworks read as access_token
	// (access.token, access_token[], ACCESS_TOKEN, ...), a form token on
	// GET, a token also in the header, or malformed encoding is 400
	// invalid_request. Default: false.
	AllowFormToken bool `json:"allow_form_token,omitempty"`
	// Also accept the token as an access_token query parameter (RFC 6750
	// §2.3), with the same name rules as the form. Tokens in URLs end up in
	// logs; responses to such requests are made Cache-Control: private.
	// Default: false.
	AllowQueryToken bool `json:"allow_query_token,omitempty"`
	// The longest token accepted, in bytes. Default: 8192.
	MaxTokenLength int `json:"max_token_length,omitempty"`
	// The Retry-After sent with 503. Default: 5s.
	RetryAfter caddy.Duration `json:"retry_after,omitempty"`
	// Clock skew allowed on exp, nbf and iat, for JWTs and introspection
	// responses alike, and in how long a cached decision is kept. Default:
	// 30s. jwt.leeway is the same setting (an error if both differ).
	Leeway caddy.Duration `json:"leeway,omitempty"`
	// A gateway-signed JWT for the upstream in place of the caller's token
	// (the phantom-token pattern). Default: none.
	UpstreamToken *UpstreamTokenConfig `json:"upstream_token,omitempty"`
	// DPoP (RFC 9449). Bound tokens (cnf.jkt, cnf.x5t#S256) are enforced
	// whatever it says. Default: off.
	DPoP *DPoPConfig `json:"dpop,omitempty"`

	extractor introspect.Extractor
	policy    introspect.Policy
	entry     *poolEntry
	poolKey   string
	realm     string // pre-quoted for the challenge
	retry     string
	logger    *zap.Logger
	metrics   *metrics
	upstream  *upstreamtoken.Minter // nil without upstream_token

	// prm is the RFC 9728 metadata served (nil: none); requiredScope is
	// the scope that 401 challenges name with it.
	prm           *servedMetadata
	requiredScope string
	dpop          *dpopGate

	// The issuers this route trusts (its own first), as validated.
	issuers   *introspect.Issuers
	routes    []issuerRoute // one per validator of issuers, then one for none
	trustKeys []string      // pool keys of the trusted issuers' validators

	// forward_claims as the warm path uses them (memo.go): the interned
	// claim list and the canonical header names. Nil: not provisioned.
	fwd        *forwardSpec
	fwdHeaders []string
}

// ForwardClaim names a claim and the upstream header that carries it.
type ForwardClaim struct {
	// Claim name; a dotted path reaches nested claims.
	Claim string `json:"claim"`
	// The request header to set.
	Header string `json:"header"`
}

// IntrospectConfig configures RFC 7662 introspection.
type IntrospectConfig struct {
	// The introspection endpoint. Default: discovered from issuer.
	Endpoint string `json:"endpoint,omitempty"`
	// The gateway's own client_id at the authorization server.
	ClientID string `json:"client_id,omitempty"`
	// The gateway's client secret. Placeholders such as {env.SECRET} and
	// {file./run/secrets/x} are resolved at load time.
	ClientSecret string `json:"client_secret,omitempty"`
	// How the gateway authenticates: client_secret_basic (default),
	// client_secret_post, client_secret_jwt, private_key_jwt, or bearer (its
	// own client_credentials token from token_endpoint).
	AuthMethod string `json:"auth_method,omitempty"`
	// A PEM (PKCS#8, PKCS#1, SEC1) or JWK file with the gateway's private key,
	// for private_key_jwt (and for bearer, to get its token with it).
	PrivateKey string `json:"private_key,omitempty"`
	// The kid sent with private_key_jwt assertions when the key has none.
	// Default: the JWK's own kid, else the key's RFC 7638 thumbprint.
	PrivateKeyID string `json:"private_key_id,omitempty"`
	// The token endpoint for auth_method bearer. Default: discovered.
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	// Scopes the gateway asks for its own token (auth_method bearer), such
	// as introspect.
	TokenScope []string `json:"token_scope,omitempty"`
	// The aud of client assertions (client_secret_jwt, private_key_jwt).
	// Default: the issuer identifier when issuer is set, else the URL of the
	// endpoint each assertion is sent to (the introspection endpoint, or
	// token_endpoint for the gateway's own token with auth_method bearer).
	// Some servers want a realm-specific audience instead.
	AssertionAudience string `json:"assertion_audience,omitempty"`
	// Lifetime of a client assertion (exp − iat). Default: 2m; at most 1h.
	AssertionLifetime caddy.Duration `json:"assertion_lifetime,omitempty"`
	// Bound on one introspection call. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Also introspect JWTs that verified locally, to catch revoked JWTs.
	// Only with jwt configured. Default: false.
	IntrospectJWT bool `json:"introspect_jwt,omitempty"`
	// At most this many introspection calls in flight; excess requests get
	// 503 after a short wait instead of queueing. Default: 64.
	MaxConcurrent int `json:"max_concurrent,omitempty"`
}

// JWTConfig configures local JWT access-token verification.
type JWTConfig struct {
	// The JWKS URL. Default: jwks_uri from the issuer's metadata.
	JWKSURL string `json:"jwks_url,omitempty"`
	// A local JWKS file instead of a URL.
	JWKSFile string `json:"jwks_file,omitempty"`
	// Accepted signature algorithms. Default: the asymmetric algorithms the
	// keys declare. none and HS* are never accepted.
	Algorithms []string `json:"algorithms,omitempty"`
	// Accepted typ header values. Default: at+jwt and application/at+jwt
	// (RFC 9068 §4).
	Types []string `json:"typ,omitempty"`
	// Clock skew allowed on exp, nbf and iat. The same setting as the
	// handler's leeway, which also applies to introspection; give one.
	// Default: 30s.
	Leeway caddy.Duration `json:"leeway,omitempty"`
	// An unknown kid refreshes the JWKS at most once per this interval.
	// Default: 10s.
	RefreshInterval caddy.Duration `json:"refresh_interval,omitempty"`
	// Start even if the JWKS cannot be fetched at load time; requests get
	// 503 until keys arrive. Default: false (loading the config fails).
	AllowStartWithoutKeys bool `json:"allow_start_without_keys,omitempty"`
}

// CacheConfig configures the decision cache.
type CacheConfig struct {
	// Upper bound on how long a good decision is reused; never beyond the
	// token's own exp. Default: 5m.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// How long an invalid_token decision is reused. Default: 30s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`
	// The in-memory bound. Default: 100000.
	MaxEntries int `json:"max_entries,omitempty"`
	// A Redis URL for a tier shared by a fleet of gateways (redis://,
	// rediss://). Default: none.
	Redis string `json:"redis,omitempty"`
	// A secret for HMAC-SHA256 cache keys, so that a Redis reader cannot test
	// guessed tokens. Placeholders work. Default: plain SHA-256.
	KeySecret string `json:"key_secret,omitempty"`
	// Bound on each Redis operation. Default: 50ms.
	RedisTimeout caddy.Duration `json:"redis_timeout,omitempty"`
	// Keep good decisions this long past ttl (never past the token's exp)
	// and use them only while the authorization server is unreachable. A
	// token revoked during an outage stays accepted for up to this long.
	// Default: 0 (off).
	StaleGrace caddy.Duration `json:"stale_grace,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.bearer_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.servesJWKS(r) {
		h.serveJWKS(w, r)
		return nil
	}
	if h.prm != nil && h.serveResourceMetadata(w, r) {
		return nil
	}
	token, from, xerr := h.extractor.Extract(r)
	if xerr != nil {
		h.reject(w, r, xerr, "")
		return nil
	}
	if token == "" {
		h.challenge(w, r)
		return nil
	}
	d, key, v, err := h.issuers.Validate(r.Context(), token)
	route := h.routeOf(v)
	if err != nil {
		if r.Context().Err() != nil {
			// The client gave up while its token was being checked: not
			// the authorization server's fault, and nobody to answer.
			if c := h.logger.Check(zapcore.DebugLevel, "client went away during token validation"); c != nil {
				c.Write(zap.String("token_fingerprint", key.Fingerprint()))
			}
			return nil
		}
		h.rejectFrom(w, r, introspect.AsError(err), key.Fingerprint(), route.metrics)
		return nil
	}
	// Sender constraints, per request and never cached (dpop.go).
	if berr := h.bind(w, r, confirmationOf(d), token, from); berr != nil {
		h.rejectFrom(w, r, berr, key.Fingerprint(), route.metrics)
		return nil
	}
	// The issuer's policy: the route's, with that issuer's audience. It is
	// applied on every request: the cache holds what the token is, not
	// whether this route lets it through.
	if perr := route.policy.Authorize(d); perr != nil {
		h.rejectFrom(w, r, perr, key.Fingerprint(), route.metrics)
		return nil
	}
	if err := h.admit(r, d, from); err != nil {
		h.rejectFrom(w, r, introspect.AsError(err), key.Fingerprint(), route.metrics)
		return nil
	}
	route.metrics.allowed.Inc()
	if c := h.logger.Check(zapcore.DebugLevel, "token accepted"); c != nil {
		c.Write(zap.String("outcome", "allowed"), zap.String("issuer", route.metrics.issuer), zap.String("client_id", d.ClientID()),
			zap.String("sub", d.Subject()), zap.String("token_fingerprint", key.Fingerprint()),
			zap.String("source", d.Source()), zap.String("transport", from.String()))
	}
	if from == introspect.TransportQuery {
		// RFC 6750 §2.3: a response to a request with the token in its URI
		// must not be stored by shared caches, whatever the upstream says.
		w = newPrivateResponse(w)
	}
	return next.ServeHTTP(w, r)
}

// admit sets the placeholders and upstream headers for an accepted token,
// and with strip_authorization takes the caller's token off the request
// (with upstream_token, puts the gateway's in its place). What is costly
// to derive is derived from the decision once (decisionMemo), not per
// request.
func (h *Handler) admit(r *http.Request, d *introspect.Decision, from introspect.Transport) error {
	if repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); repl != nil {
		setPlaceholders(repl, d)
	}
	if len(h.ForwardClaims) > 0 {
		h.forwardClaims(r, d)
	}
	if h.upstream != nil {
		return h.sendUpstreamToken(r, d, from, memoOf(d).reuse())
	}
	if h.StripAuthorization {
		r.Header.Del("Authorization")
		return introspect.RemoveToken(r, from)
	}
	return nil
}

// forwardClaims sets the forward_claim headers, after removing any the
// client sent under those names.
func (h *Handler) forwardClaims(r *http.Request, d *introspect.Decision) {
	headers, vals := h.fwdHeaders, []string(nil)
	direct := h.fwd != nil && h.fwd.direct
	switch {
	case direct:
		// Every claim is sub: read in place below.
	case h.fwd != nil:
		vals = memoOf(d).forwarded(h.fwd)
	default:
		// A Handler used without Provision (unit tests).
		headers = make([]string, len(h.ForwardClaims))
		paths := make([]string, len(h.ForwardClaims))
		for i, fc := range h.ForwardClaims {
			headers[i], paths[i] = textproto.CanonicalMIMEHeaderKey(fc.Header), fc.Claim
		}
		vals = forwardClaimValues(d, paths)
	}
	underscores := false
	for name := range r.Header {
		if strings.IndexByte(name, '_') >= 0 {
			underscores = true
			break
		}
	}
	for i, hdr := range headers {
		// Always delete first: otherwise a client could pre-supply the
		// header and have it reach the upstream as if it came from us.
		delete(r.Header, hdr)
		if underscores {
			// CGI-style upstreams (php_fastcgi, WSGI) map X_User and
			// X-User to the same HTTP_X_USER variable: drop the
			// underscore spelling too, or a client could still forge it.
			for name := range r.Header {
				if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), hdr) {
					delete(r.Header, name)
				}
			}
		}
		var s string
		if direct {
			s = headerSafe(d.Subject())
		} else {
			s = vals[i]
		}
		if s != "" {
			// A new value slice per request: one shared by every request
			// would be edited in place by header_up replacements.
			r.Header[hdr] = []string{s}
		}
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
