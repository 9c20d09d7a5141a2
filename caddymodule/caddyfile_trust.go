package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// unmarshalTrust parses one trust block (the grammar is in
// UnmarshalCaddyfile's doc comment):
//
//	trust <issuer> {
//	    jwt [{ … }]
//	    introspect { … }
//	    audience <aud...>
//	}
//
// jwt and introspect take the same sub-directives as the route's own.
func (h *Handler) unmarshalTrust(d *caddyfile.Dispenser) error {
	t := TrustConfig{}
	if !d.NextArg() {
		return d.Err("trust needs the issuer identifier: trust <issuer> { jwt | introspect { … } }")
	}
	t.Issuer = d.Val()
	if d.NextArg() {
		return d.Errf("trust takes exactly one issuer; use one trust block per issuer")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "jwt":
			if t.JWT != nil {
				return d.Errf("trust %s: jwt block already specified", t.Issuer)
			}
			t.JWT = new(JWTConfig)
			err = t.JWT.unmarshal(d)
		case "introspect":
			if t.Introspect != nil {
				return d.Errf("trust %s: introspect block already specified", t.Issuer)
			}
			t.Introspect = new(IntrospectConfig)
			err = t.Introspect.unmarshal(d)
		case "audience":
			err = stringList(d, &t.Audience)
		default:
			return d.Errf("unrecognized trust subdirective '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	h.Trust = append(h.Trust, t)
	return nil
}

// unmarshalRequireClaim parses require_claim <claim path> <value...>.
func (h *Handler) unmarshalRequireClaim(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 2 {
		return d.Err("require_claim needs a claim and at least one value: require_claim <claim path> <value...>")
	}
	h.RequireClaims = append(h.RequireClaims, RequireClaim{Claim: args[0], Values: args[1:]})
	return nil
}
