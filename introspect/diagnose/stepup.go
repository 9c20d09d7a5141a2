package diagnose

import (
	"fmt"
	"strings"
	"time"

	"github.com/tokengate/tokengate/introspect"
)

// How the token policy check explains RFC 9470 step-up rules.

// stepUpHint is the token policy check's hint for a step-up refusal.
const stepUpHint = "the user must sign in again as required: the client passes acr_values/max_age from the challenge to the authorization server (RFC 9470 §4); a token without a user (client_credentials) has no acr or auth_time and cannot pass"

// stepUpSummary is what the token policy check says the step-up rules
// passed.
func stepUpSummary(p *introspect.Policy) []string {
	var parts []string
	if len(p.ACRValues) > 0 {
		parts = append(parts, "acr one of "+strings.Join(p.ACRValues, " "))
	}
	if p.MaxAge > 0 {
		parts = append(parts, fmt.Sprintf("authenticated within %s", p.MaxAge))
	}
	return parts
}

// stepUpHave is what the token said, next to what the route requires.
func stepUpHave(p *introspect.Policy, dec *introspect.Decision) string {
	at := "none"
	if !dec.AuthTime().IsZero() {
		at = dec.AuthTime().UTC().Format(time.RFC3339)
	}
	var want []string
	if len(p.ACRValues) > 0 {
		want = append(want, "acr_values "+strings.Join(p.ACRValues, " "))
	}
	if p.MaxAge > 0 {
		want = append(want, "max_age "+p.MaxAge.String())
	}
	return fmt.Sprintf(" (acr %q, auth_time %s; %s)", dec.ACR(), at, strings.Join(want, ", "))
}
