package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("bearer_auth", parseCaddyfile)
	// After basic_auth, not "before reverse_proxy": respond sorts before
	// reverse_proxy and would answer unauthenticated requests.
	httpcaddyfile.RegisterDirectiveOrder("bearer_auth", httpcaddyfile.After, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler. Syntax:
//
//	bearer_auth [<matcher>] {
//	    realm        <string>
//	    issuer       <url>
//	    audience     <aud...>
//	    scopes       <scope...>
//	    any_scope    <scope...>
//	    clients      <client_id...>
//	    acr_values   <acr...>
//	    max_age      <duration>
//	    resource_metadata {
//	        resource               <url>
//	        authorization_servers  <url...>
//	        scopes_supported       <scope...>
//	        resource_name          <text>
//	        resource_documentation <url>
//	    }
//	    require_claim <claim path> <value...>
//	    introspect {
//	        endpoint       <url>
//	        client_id      <id>
//	        client_secret  <secret>
//	        auth_method    client_secret_basic | client_secret_post | client_secret_jwt | private_key_jwt | bearer
//	        private_key    <pem-or-jwk-file> [<kid>]
//	        token_endpoint <url>
//	        token_scope    <scope...>
//	        assertion_audience <aud>
//	        assertion_lifetime <duration>
//	        timeout        <duration>
//	        max_concurrent <n>
//	        introspect_jwt
//	    }
//	    jwt {
//	        jwks_url      <url>
//	        jwks_file     <path>
//	        algorithms    <alg...>
//	        typ           <typ...>
//	        leeway        <duration>
//	        refresh_interval <duration>
//	        allow_start_without_keys
//	    }
//	    trust <issuer> {
//	        jwt [{ … }]
//	        introspect { … }
//	        audience <aud...>
//	    }
//	    cache {
//	        ttl           <duration>
//	        negative_ttl  <duration>
//	        max_entries   <n>
//	        redis         <url>
//	        key_secret    <secret>
//	        redis_timeout <duration>
//	        stale_grace   <duration>
//	    }
//	    forward_claim <claim> <Header-Name>
//	    strip_authorization
//	    allow_form_token
//	    allow_query_token
//	    max_token_length <bytes>
//	    retry_after <duration>
//	    leeway <duration>
//	    upstream_token {
//	        signing_key      <pem-or-jwk-file>
//	        next_signing_key <pem-or-jwk-file>
//	        issuer           <url>
//	        audience         <aud...>
//	        ttl              <duration>
//	        jwks_path        <path>
//	        claims           <name...>
//	    }
//	    dpop off | optional | required {
//	        algorithms <alg...>
//	        window     <duration>
//	        nonce
//	    }
//	}
//
// trust's jwt and introspect blocks take the sub-directives of the route's
// own; trust and require_claim are repeatable.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		var err error
		switch sub {
		case "realm":
			err = oneString(d, &h.Realm)
		case "issuer":
			err = oneString(d, &h.Issuer)
		case "audience":
			err = stringList(d, &h.Audience)
		case "scopes":
			err = stringList(d, &h.Scopes)
		case "any_scope":
			err = stringList(d, &h.AnyScope)
		case "clients":
			err = stringList(d, &h.Clients)
		case "acr_values":
			err = stringList(d, &h.ACRValues)
		case "max_age":
			err = duration(d, &h.MaxAge)
		case "resource_metadata":
			if h.ResourceMetadata != nil {
				return d.Err("resource_metadata block already specified")
			}
			h.ResourceMetadata = new(ResourceMetadataConfig)
			err = h.ResourceMetadata.unmarshal(d)
		case "require_claim":
			err = h.unmarshalRequireClaim(d)
		case "trust":
			err = h.unmarshalTrust(d)
		case "introspect":
			if h.Introspect != nil {
				return d.Err("introspect block already specified")
			}
			h.Introspect = new(IntrospectConfig)
			err = h.Introspect.unmarshal(d)
		case "jwt":
			if h.JWT != nil {
				return d.Err("jwt block already specified")
			}
			h.JWT = new(JWTConfig)
			err = h.JWT.unmarshal(d)
		case "cache":
			if h.Cache != nil {
				return d.Err("cache block already specified")
			}
			h.Cache = new(CacheConfig)
			err = h.Cache.unmarshal(d)
		case "forward_claim":
			var claim, header string
			if !d.Args(&claim, &header) || d.NextArg() {
				return d.Errf("forward_claim needs exactly two arguments: <claim> <Header-Name>")
			}
			h.ForwardClaims = append(h.ForwardClaims, ForwardClaim{Claim: claim, Header: header})
		case "strip_authorization":
			err = flag(d, &h.StripAuthorization)
		case "allow_form_token":
			err = flag(d, &h.AllowFormToken)
		case "allow_query_token":
			err = flag(d, &h.AllowQueryToken)
		case "max_token_length":
			err = positiveInt(d, &h.MaxTokenLength)
		case "retry_after":
			err = duration(d, &h.RetryAfter)
		case "leeway":
			err = duration(d, &h.Leeway)
		case "upstream_token":
			if h.UpstreamToken != nil {
				return d.Err("upstream_token block already specified")
			}
			h.UpstreamToken = new(UpstreamTokenConfig)
			err = h.UpstreamToken.unmarshal(d)
		case "dpop":
			if h.DPoP != nil {
				return d.Err("dpop already specified")
			}
			h.DPoP = new(DPoPConfig)
			err = h.DPoP.unmarshal(d)
		default:
			return d.Errf("unrecognized bearer_auth subdirective '%s'", sub)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *IntrospectConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "endpoint":
			err = oneString(d, &c.Endpoint)
		case "client_id":
			err = oneString(d, &c.ClientID)
		case "client_secret":
			err = oneString(d, &c.ClientSecret)
		case "auth_method":
			err = oneString(d, &c.AuthMethod)
		case "private_key":
			if c.PrivateKey != "" {
				return d.Err("private_key already specified")
			}
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.Err("private_key needs <file> [<kid>]")
			}
			c.PrivateKey = args[0]
			if len(args) == 2 {
				c.PrivateKeyID = args[1]
			}
		case "token_endpoint":
			err = oneString(d, &c.TokenEndpoint)
		case "token_scope":
			err = stringList(d, &c.TokenScope)
		case "assertion_audience":
			err = oneString(d, &c.AssertionAudience)
		case "assertion_lifetime":
			err = duration(d, &c.AssertionLifetime)
		case "timeout":
			err = duration(d, &c.Timeout)
		case "max_concurrent":
			err = positiveInt(d, &c.MaxConcurrent)
		case "introspect_jwt":
			err = flag(d, &c.IntrospectJWT)
		default:
			return d.Errf("unrecognized introspect subdirective '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *JWTConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "jwks_url":
			err = oneString(d, &c.JWKSURL)
		case "jwks_file":
			err = oneString(d, &c.JWKSFile)
		case "algorithms":
			err = stringList(d, &c.Algorithms)
		case "typ":
			err = stringList(d, &c.Types)
		case "leeway":
			err = duration(d, &c.Leeway)
		case "refresh_interval":
			err = duration(d, &c.RefreshInterval)
		case "allow_start_without_keys":
			err = flag(d, &c.AllowStartWithoutKeys)
		default:
			return d.Errf("unrecognized jwt subdirective '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *CacheConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "ttl":
			err = duration(d, &c.TTL)
		case "negative_ttl":
			err = duration(d, &c.NegativeTTL)
		case "max_entries":
			err = positiveInt(d, &c.MaxEntries)
		case "redis":
			err = oneString(d, &c.Redis)
		case "key_secret":
			err = oneString(d, &c.KeySecret)
		case "redis_timeout":
			err = duration(d, &c.RedisTimeout)
		case "stale_grace":
			err = duration(d, &c.StaleGrace)
		default:
			return d.Errf("unrecognized cache subdirective '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// The helpers below do the arity check, the duplicate check and the parse of
// one sub-directive each, with errors that quote the bad value.

func oneString(d *caddyfile.Dispenser, dst *string) error {
	name := d.Val()
	if *dst != "" {
		return d.Errf("%s already specified", name)
	}
	if !d.NextArg() {
		return d.Errf("%s needs a value", name)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.Errf("%s takes exactly one value", name)
	}
	return nil
}

func stringList(d *caddyfile.Dispenser, dst *[]string) error {
	name := d.Val()
	if len(*dst) > 0 {
		return d.Errf("%s already specified", name)
	}
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("%s needs at least one value", name)
	}
	*dst = args
	return nil
}

func flag(d *caddyfile.Dispenser, dst *bool) error {
	name := d.Val()
	if d.NextArg() {
		return d.Errf("%s takes no arguments", name)
	}
	*dst = true
	return nil
}

func duration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	name := d.Val()
	if *dst != 0 {
		return d.Errf("%s already specified", name)
	}
	if !d.NextArg() {
		return d.Errf("%s needs a duration", name)
	}
	v, err := caddy.ParseDuration(d.Val())
	if err != nil || v <= 0 {
		return d.Errf("invalid %s duration '%s': must be positive, like 30s or 5m", name, d.Val())
	}
	*dst = caddy.Duration(v)
	if d.NextArg() {
		return d.Errf("%s takes exactly one value", name)
	}
	return nil
}

func positiveInt(d *caddyfile.Dispenser, dst *int) error {
	name := d.Val()
	if *dst != 0 {
		return d.Errf("%s already specified", name)
	}
	if !d.NextArg() {
		return d.Errf("%s needs a number", name)
	}
	n, err := strconv.Atoi(d.Val())
	if err != nil || n <= 0 {
		return d.Errf("invalid %s '%s': must be a positive integer", name, d.Val())
	}
	*dst = n
	if d.NextArg() {
		return d.Errf("%s takes exactly one value", name)
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
