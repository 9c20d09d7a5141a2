package introspect

import (
	"slices"
	"strings"
)

// RequiredScopes is what a token needs to pass the route's scope rules:
// every scope of Scopes and every alternative of AnyScope, once each, in
// that order. Challenges carry it as their scope attribute (RFC 6750 §3;
// every 401 with RFC 9728 metadata, and each 403 insufficient_scope), and it
// is the default scopes_supported of the route's metadata. It names all of
// them, not only the one a token lacked, so that a client asking for exactly
// that gets a token that passes, instead of trading one missing scope for
// another.
func (p *Policy) RequiredScopes() []string {
	out := make([]string, 0, len(p.Scopes)+len(p.AnyScope))
	for _, s := range slices.Concat(p.Scopes, p.AnyScope) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// RequiredScope is RequiredScopes space-separated (RFC 6749 §3.3).
func (p *Policy) RequiredScope() string { return strings.Join(p.RequiredScopes(), " ") }
