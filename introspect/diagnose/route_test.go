package diagnose

import (
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/testas"
	"github.com/tokengate/tokengate/introspect"
)

// A require_claim refusal is explained by the claim's name, with the
// policy's own hint, and without the token's value for it.
func TestDoctorExplainsAClaimRefusalWithoutTheValue(t *testing.T) {
	as := testas.Start(t, testas.WithClients(testas.Client{ID: "member", Secret: "s", Scopes: []string{"read"},
		JWTAccessTokens: true, Claims: map[string]any{"groups": []any{"group-value-7"}}}))
	cfg := introspect.Config{Issuer: as.Issuer(), Audience: []string{"member"},
		JWT: &introspect.JWTOptions{JWKSURL: as.JWKSURL(), Types: []string{"JWT"}}}
	tok := as.Token(t, "member", "read")
	for _, tc := range []struct {
		req    introspect.ClaimRequirement
		status Status
		detail string
	}{
		{introspect.ClaimRequirement{Path: "groups", Values: []string{"group-value-7"}}, StatusPass, "claim groups ok"},
		{introspect.ClaimRequirement{Path: "groups", Values: []string{"admin"}}, StatusFail,
			"insufficient_scope: the token's claim groups has none of the required values"},
		{introspect.ClaimRequirement{Path: "tenant", Values: []string{"42"}}, StatusFail,
			"insufficient_scope: the token lacks the required claim tenant"},
	} {
		p := introspect.Policy{Claims: []introspect.ClaimRequirement{tc.req}}
		b := Run(t.Context(), Target{Where: Where{Name: "test"}, Issuer: cfg.Issuer, Config: cfg, Policy: p},
			Options{Token: tok, HaveToken: true})
		checkIn(t, b, CheckTokenPolicy, tc.status, tc.detail)
		for _, c := range b.Checks {
			if c.Name == CheckTokenPolicy && tc.status == StatusFail {
				if c.Detail != tc.detail || !strings.Contains(c.Hint, "require_claim") {
					t.Errorf("%s: detail %q (want exactly %q), hint %q", tc.req.Path, c.Detail, tc.detail, c.Hint)
				}
				if strings.Contains(c.Detail+c.Hint, "group-value-7") {
					t.Errorf("the claim's value is shown: %q / %q", c.Detail, c.Hint)
				}
			}
		}
	}
}
