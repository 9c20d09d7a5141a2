package introspect

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/tokengate/introspect/claims"
)

// Step-up authentication (RFC 9470): a route may require that the user
// behind a token authenticated in a certain way (acr_values) or recently
// (max_age). A token that does not meet that is still a good token, so the
// answer is not invalid_token but 401 insufficient_user_authentication with
// what is required, which the client passes on to the authorization server
// in a new authorization request (RFC 9470 §4).
//
// The check is the policy's last one (Policy.Authorize). A token refused for
// its audience, its client or its scopes is told that first: a new
// authentication would not change those, and it costs the user an
// interaction, so it is asked for only when it is the one thing missing.
// Like the rest of the policy it runs on every request, cached decisions
// included: max_age is judged against the clock of this request, not the one
// of the request that filled the cache.

// authorizeAuthentication applies ACRValues and MaxAge to d.
func (p *Policy) authorizeAuthentication(d *Decision) *Error {
	if len(p.ACRValues) == 0 && p.MaxAge <= 0 {
		return nil
	}
	var reason, desc string
	switch {
	case len(p.ACRValues) > 0 && d.ACR() == "":
		reason, desc = "acr_missing", "the token does not say how the user authenticated (no acr); this API requires a stronger authentication"
	case len(p.ACRValues) > 0 && !slices.Contains(p.ACRValues, d.ACR()):
		reason, desc = "acr_not_accepted", "the user's authentication (acr) is not one this API accepts"
	case p.MaxAge > 0 && d.AuthTime().IsZero():
		reason, desc = "auth_time_missing", "the token does not say when the user authenticated (no auth_time); this API requires a recent authentication"
	case p.MaxAge > 0 && p.now().Sub(d.AuthTime()) > p.MaxAge+p.Leeway:
		reason, desc = "auth_time_too_old", "the user authenticated too long ago for this API"
	default:
		return nil
	}
	e := &Error{Code: CodeInsufficientUserAuthentication, Reason: reason, Description: desc,
		ACRValues: p.ACRValues, MaxAge: p.MaxAge}
	// For the operator's log only: what the token said.
	switch reason {
	case "acr_not_accepted":
		e.Hint = fmt.Sprintf("token acr %q, acr_values %s", claims.Shorten(d.ACR()), strings.Join(p.ACRValues, " "))
	case "auth_time_too_old":
		e.Hint = fmt.Sprintf("auth_time %s, max_age %s, leeway %s", d.AuthTime().UTC().Format(time.RFC3339), p.MaxAge, p.Leeway)
	case "acr_missing", "auth_time_missing":
		e.Hint = "the token carries no " + strings.TrimSuffix(reason, "_missing") + ": if users did authenticate, configure the authorization server to put it into access tokens and introspection answers"
	}
	return e
}

func (p *Policy) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// MaxAgeSeconds renders a max_age as RFC 9470 §3 sends it: whole seconds,
// rounded up so that the client never asks for less than the route needs.
func MaxAgeSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// CheckStepUp reports a mistake in acr_values or max_age, without I/O.
// acr values travel space-separated in a quoted challenge parameter (RFC
// 9470 §3), so each must be printable ASCII without spaces, quotes or
// backslashes (URIs such as urn:mace:incommon:iap:silver are).
func CheckStepUp(acrValues []string, maxAge time.Duration) error {
	for _, v := range acrValues {
		if !claims.IsScopeToken(v) {
			return fmt.Errorf("acr_values: %q cannot be sent in a challenge (printable ASCII without spaces, quotes or backslashes)", v)
		}
	}
	if maxAge < 0 {
		return fmt.Errorf("max_age must not be negative")
	}
	return nil
}
