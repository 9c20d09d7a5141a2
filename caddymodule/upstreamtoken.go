package caddymodule

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/introspect/upstreamtoken"
)

// The phantom token's glue: config, Caddyfile, provisioning, the JWKS
// endpoint, and putting the token on the upstream request. What the token
// says and when it is re-signed is introspect/upstreamtoken's.

// UpstreamTokenConfig makes the upstream receive a short-lived JWT signed by
// the gateway (Authorization: Bearer <jwt>, typ at+jwt) instead of the
// caller's token, which is removed from the header, the query and the form
// body. A token is signed once per cached decision and reused while it has
// more than half of its life left; a reused token keeps its jti, so
// upstreams must not treat jti as a per-request nonce.
type UpstreamTokenConfig struct {
	// The private key the gateway signs with: PEM (PKCS#8, PKCS#1, SEC1)
	// or JWK / JWK Set. RSA signs RS256, EC P-256 ES256, Ed25519 EdDSA,
	// unless the JWK names its alg. The kid is the JWK's own, else the
	// key's RFC 7638 thumbprint. Placeholders such as {env.X} work.
	SigningKey string `json:"signing_key,omitempty"`
	// A second private key, published in the JWKS but not used to sign:
	// the next key before a rotation, or the previous one just after it.
	NextSigningKey string `json:"next_signing_key,omitempty"`
	// The iss of the tokens: the gateway's own identifier, which must
	// differ from the issuer of the tokens the route accepts.
	Issuer string `json:"issuer,omitempty"`
	// The aud of the tokens: the upstream(s) they are meant for.
	Audience []string `json:"audience,omitempty"`
	// Upper bound on a token's lifetime (exp − iat); never past the
	// caller token's exp. Default: 60s; at most 1h.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// The request path at which the handler serves the public JWKS to
	// anyone, without a token (GET or HEAD). It must be a path that
	// reaches this handler. Default: none (not served).
	JWKSPath string `json:"jwks_path,omitempty"`
	// Top-level claims of the caller's token to copy into the upstream
	// token (acr, auth_time and cnf always are, when present).
	Claims []string `json:"claims,omitempty"`
}

// options maps the config to the minter's: the glue's one job here.
func (c *UpstreamTokenConfig) options(callerIssuer string) upstreamtoken.Options {
	return upstreamtoken.Options{
		SigningKeyFile: c.SigningKey, NextSigningKeyFile: c.NextSigningKey,
		Issuer: c.Issuer, Audience: c.Audience, TTL: time.Duration(c.TTL),
		JWKSPath: c.JWKSPath, Claims: c.Claims, CallerIssuers: []string{callerIssuer},
	}
}

// checkUpstreamToken is Validate's part for upstream_token: no I/O.
func (h *Handler) checkUpstreamToken() error {
	if h.UpstreamToken == nil {
		return nil
	}
	if err := h.UpstreamToken.options(h.Issuer).Check(); err != nil {
		return fmt.Errorf("bearer_auth: %w", err)
	}
	return nil
}

// provisionUpstreamToken resolves placeholders, fills the default ttl (so
// the config in force shows it) and loads the keys.
func (h *Handler) provisionUpstreamToken() error {
	c := h.UpstreamToken
	if c == nil {
		return nil
	}
	repl := caddy.NewReplacer()
	c.SigningKey = repl.ReplaceAll(c.SigningKey, "")
	c.NextSigningKey = repl.ReplaceAll(c.NextSigningKey, "")
	o := c.options(h.Issuer).WithDefaults()
	c.TTL = caddy.Duration(o.TTL)
	m, err := upstreamtoken.New(o)
	if err != nil {
		return fmt.Errorf("bearer_auth: %w", err)
	}
	h.upstream = m
	return nil
}

// jwksCacheControl is the JWKS's Cache-Control header, built once.
var jwksCacheControl = "public, max-age=" + strconv.Itoa(int(upstreamtoken.JWKSMaxAge/time.Second))

// servesJWKS reports whether r asks for the upstream token JWKS.
func (h *Handler) servesJWKS(r *http.Request) bool {
	return h.upstream != nil && h.upstream.JWKSPath() != "" && r.URL.Path == h.upstream.JWKSPath()
}

// serveJWKS answers a request for the JWKS: public keys only, to anyone (an
// upstream has no token to show), cacheable for JWKSMaxAge.
func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	body := h.upstream.JWKS()
	hdr.Set("Content-Type", "application/jwk-set+json")
	hdr.Set("Cache-Control", jwksCacheControl)
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// sendUpstreamToken takes the caller's token off r, wherever it came, and
// puts the gateway's token for d in its place. reuse is the decision's
// (see decisionMemo), so a cached decision is signed for once per token
// lifetime. On error nothing is forwarded: the request must not reach the
// upstream without a token, nor with the caller's.
func (h *Handler) sendUpstreamToken(r *http.Request, d *introspect.Decision, from introspect.Transport, reuse *upstreamtoken.Reuse) error {
	tok, err := h.upstream.For(d, reuse)
	if err != nil {
		return err
	}
	if err := introspect.RemoveToken(r, from); err != nil {
		return err
	}
	// Set makes a new value slice per request: one shared by every request
	// would be edited in place by header_up replacements.
	r.Header.Set("Authorization", tok.Authorization)
	return nil
}

func (c *UpstreamTokenConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "signing_key":
			err = oneString(d, &c.SigningKey)
		case "next_signing_key":
			err = oneString(d, &c.NextSigningKey)
		case "issuer":
			err = oneString(d, &c.Issuer)
		case "audience":
			err = stringList(d, &c.Audience)
		case "ttl":
			err = duration(d, &c.TTL)
		case "jwks_path":
			err = oneString(d, &c.JWKSPath)
		case "claims":
			err = stringList(d, &c.Claims)
		default:
			return d.Errf("unrecognized upstream_token subdirective '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if c.SigningKey == "" {
		return d.Err("upstream_token needs signing_key")
	}
	return nil
}
