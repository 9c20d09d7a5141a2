package caddymodule

import (
	"fmt"

	"github.com/tokengate/tokengate/introspect/diagnose"
)

// doctorTrustTargets are the blocks of the issuers a route trusts: each
// trusted issuer is checked as a block of its own (its discovery, keys,
// credentials and clock), with its validator configuration mapped exactly
// as Provision maps it and the route's policy as it applies to that
// issuer's tokens. The name says which route and which trust block.
func (h *Handler) doctorTrustTargets(own diagnose.Target) []diagnose.Target {
	var out []diagnose.Target
	for i := range h.Trust {
		cfg := h.trustConfig(&h.Trust[i])
		t := own
		t.Name = fmt.Sprintf("%s trust#%d", own.Name, i+1)
		t.Issuer = cfg.Issuer
		t.Config = cfg
		t.Policy = h.policyFor(cfg)
		out = append(out, t)
	}
	return out
}
