package diagnose

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tokengate/tokengate/cache"
	"github.com/tokengate/tokengate/introspect"
	claimtext "github.com/tokengate/tokengate/introspect/claims"
)

// explainToken says what the gateway would decide for the token, step by
// step, each step by the code that takes it: the route's Extractor for the
// syntax, Validator.PathOf for the path, Validator.Validate for the verdict,
// the route's Policy, and the handler itself (Target.Respond) for the
// response the client would get.
func (d *doctor) explainToken() {
	steps := []string{CheckTokenSyntax, CheckTokenValidation, CheckTokenPolicy, CheckDecision}
	skipRest := func(from int, reason string) {
		for _, n := range steps[from:] {
			d.skip(n, reason)
		}
	}
	if d.skipAll != "" {
		d.block.TokenFingerprint = cache.NewKeyer(nil).Key(d.opts.Token).Fingerprint()
		skipRest(0, d.skipAll)
		return
	}

	// 1. Syntax, with the route's own extractor on a real request.
	header, tok, xerr := extractToken(d.ctx, d.t.Extractor, d.opts.Token)
	shown := tok
	if xerr != nil || tok == "" {
		shown = d.opts.Token
	}
	d.block.TokenFingerprint = d.fingerprint(shown)
	switch {
	case xerr != nil:
		d.add(CheckTokenSyntax, StatusFail, fmt.Sprintf("invalid_request: %s (%s)", xerr.Description, xerr.Reason),
			"send exactly \"Authorization: Bearer <token>\" with a token of the RFC 6750 b64token characters (A-Z a-z 0-9 - . _ ~ + /, then = padding), no spaces or quotes", map[string]any{"reason": xerr.Reason})
	case tok == "":
		d.add(CheckTokenSyntax, StatusFail, "no token", "give the token to --token", nil)
	default:
		shape := "opaque"
		if introspect.LooksLikeJWT(tok) {
			shape = "JWT-shaped"
		}
		d.add(CheckTokenSyntax, StatusPass, fmt.Sprintf("b64token, %d bytes, %s", len(tok), shape), "",
			map[string]any{"length": len(tok), "jwt": shape != "opaque"})
	}
	wellFormed := xerr == nil && tok != ""

	if d.issuers == nil {
		if wellFormed {
			cause := d.loadFailure.Error()
			detail := "the gateway cannot load this block: " + cause
			if d.failed() {
				detail = "the gateway cannot load this block (see the failures above)"
			}
			d.add(CheckTokenValidation, StatusFail, detail, "fix the failures above first", map[string]any{"load_error": cause})
			skipRest(2, "skipped: the gateway cannot load this block")
		} else {
			skipRest(1, "skipped: the gateway cannot load this block")
		}
		return
	}

	// 2. Path and verdict, from the block's one validator.
	var dec *introspect.Decision
	if _, rerr := d.issuers.Route(tok); wellFormed && rerr != nil {
		// Refused before any validator: the token names an issuer the
		// route does not trust.
		d.add(CheckTokenValidation, StatusFail, d.untrusted(tok, rerr), rerr.Hint,
			map[string]any{"error": string(rerr.Code), "reason": rerr.Reason, "path": "none"})
	} else if wellFormed {
		path, data := d.tokenPath(tok)
		if d.routed {
			path = d.routeNote(tok, data) + path
		}
		ctx, cancel := d.stepContext()
		var err error
		dec, _, err = d.v.Validate(ctx, tok)
		cancel()
		if err != nil {
			ie := introspect.AsError(err)
			data["error"], data["reason"] = string(ie.Code), ie.Reason
			detail := fmt.Sprintf("%s: %s: %s (%s)", path, ie.Code, ie.Description, ie.Reason)
			if ie.Code == introspect.CodeUnavailable && ie.Err != nil {
				// The gateway's own trouble: what its error log would say.
				detail += ": " + ie.Err.Error()
				data["cause"] = ie.Err.Error()
			}
			d.add(CheckTokenValidation, StatusFail, detail, validationHint(ie), data)
			dec = nil
		} else {
			for k, v := range decisionData(dec) {
				data[k] = v
			}
			d.add(CheckTokenValidation, StatusPass, path+": "+describeDecision(dec), "", data)
		}
	} else {
		d.skip(CheckTokenValidation, "skipped: no well-formed token")
	}

	// 3. The route's policy.
	p := &d.t.Policy
	if dec != nil {
		if perr := p.Authorize(dec); perr != nil {
			d.add(CheckTokenPolicy, StatusFail, fmt.Sprintf("%s: %s", perr.Code, perr.Description)+policyHave(p, dec, perr),
				policyHint(dec, perr), map[string]any{"error": string(perr.Code), "reason": perr.Reason})
		} else {
			d.add(CheckTokenPolicy, StatusPass, policySummary(p), "", nil)
			d.allowed = dec
		}
	} else {
		d.skip(CheckTokenPolicy, "skipped: the token is not valid")
	}

	// 4. The response the client would get, from the handler itself (its
	// cache already holds the verdict: no second call to the server).
	if d.t.Respond == nil {
		d.skip(CheckDecision, "skipped: no handler to ask")
		return
	}
	ctx, cancel := d.stepContext()
	defer cancel()
	res := d.t.Respond(ctx, d.issuers, header)
	data := map[string]any{"status": res.Status}
	if res.Allowed {
		user := ""
		if dec != nil {
			user = dec.UserID()
		}
		data["user_id"] = user
		d.add(CheckDecision, StatusPass, fmt.Sprintf("%d: allowed through to the next handler as %s", res.Status, orDash(user)), "", data)
		return
	}
	var body struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(res.Body, &body)
	www := res.Header.Get("WWW-Authenticate")
	data["error"], data["www_authenticate"] = body.Error, www
	detail := fmt.Sprintf("%d %s", res.Status, orDash(body.Error))
	if ra := res.Header.Get("Retry-After"); ra != "" {
		data["retry_after"] = ra
		detail += ", Retry-After " + ra
	}
	if www != "" {
		detail += ", WWW-Authenticate: " + www
	}
	hint := ""
	if res.Status == http.StatusServiceUnavailable {
		hint = "the gateway itself could not decide (the token is not blamed): see the failures above"
	}
	d.add(CheckDecision, StatusFail, detail, hint, data)
}

// fingerprint is the one the gateway's logs show for tok: the validator's
// own cache key (HMAC with key_secret, if set).
func (d *doctor) fingerprint(tok string) string {
	if d.v != nil {
		return d.v.Key(tok).Fingerprint()
	}
	var secret []byte
	if s := d.cfg.Cache.KeySecret; s != "" {
		secret = []byte(s)
	}
	return cache.NewKeyer(secret).Key(tok).Fingerprint()
}

// tokenPath says which path the validator takes for tok
// (Validator.PathOf), with the JWT header when the token is JWT-shaped.
func (d *doctor) tokenPath(tok string) (string, map[string]any) {
	data := map[string]any{}
	v := d.v
	path := v.PathOf(tok)
	endpoint := func() string { return v.Introspector().Endpoint }
	desc := "opaque token"
	if introspect.LooksLikeJWT(tok) {
		hdr, claims, _ := introspect.UnverifiedJWT(tok)
		var parts []string
		for _, k := range []string{"alg", "kid", "typ"} {
			if s, ok := hdr[k].(string); ok {
				parts = append(parts, k+" "+claimtext.Shorten(s))
				data[k] = s
			} else {
				parts = append(parts, "no "+k)
			}
		}
		desc = "JWT (" + strings.Join(parts, ", ") + ")"
		if v.KeySet() != nil && path == introspect.PathIntrospection {
			// Hybrid mode routes a JWT of another issuer to introspection.
			iss, _ := claims["iss"].(string)
			data["path"], data["iss"] = "introspection", iss
			return fmt.Sprintf("%s from another issuer (iss %q), so introspected at %s", desc, claimtext.Shorten(iss), endpoint()), data
		}
	}
	switch path {
	case introspect.PathJWT, introspect.PathJWTThenIntrospection:
		data["path"] = "jwt"
		s := desc + " verified locally against "
		if u := introspect.KeySetURL(v.KeySet()); u != "" {
			s += u
		} else {
			s += d.cfg.JWT.JWKSFile
		}
		if path == introspect.PathJWTThenIntrospection {
			s += ", then introspected at " + endpoint() + " (introspect_jwt)"
		}
		return s, data
	case introspect.PathNone:
		data["path"] = "jwt"
		return desc + " but only jwt is configured", data
	}
	data["path"] = "introspection"
	return desc + " introspected at " + endpoint(), data
}

func decisionData(dec *introspect.Decision) map[string]any {
	m := map[string]any{"source": dec.Source(), "sub": dec.Subject(), "client_id": dec.ClientID(), "scope": dec.ScopeString(), "aud": dec.Audience()}
	if !dec.ExpiresAt().IsZero() {
		m["exp"] = dec.ExpiresAt().UTC().Format(time.RFC3339)
	}
	return m
}

func describeDecision(dec *introspect.Decision) string {
	var b strings.Builder
	b.WriteString("valid")
	if dec.Subject() != "" {
		b.WriteString(", sub " + dec.Subject())
	}
	if dec.ClientID() != "" {
		b.WriteString(", client_id " + dec.ClientID())
	}
	fmt.Fprintf(&b, ", scope %q", dec.ScopeString())
	if len(dec.Audience()) > 0 {
		b.WriteString(", aud " + strings.Join(dec.Audience(), " "))
	}
	if !dec.ExpiresAt().IsZero() {
		b.WriteString(", expires " + dec.ExpiresAt().UTC().Format(time.RFC3339))
	}
	return b.String()
}

func validationHint(e *introspect.Error) string {
	if e.Hint != "" {
		return e.Hint
	}
	switch e.Reason {
	case "inactive":
		return "the authorization server says the token is not active: expired, revoked, issued by another server or realm, or not a token at all; get a fresh one from the issuer this block trusts"
	case "expired":
		return "get a fresh token; if fresh tokens fail too, check the clocks (see the clock check)"
	case "issuer":
		return "the token comes from another issuer: get it from the issuer this block names, or fix issuer"
	case "malformed":
		return "this block verifies JWT access tokens only: configure introspect for opaque tokens, or get a JWT access token"
	}
	if e.Code == introspect.CodeUnavailable {
		return "the gateway could not decide: see the failures above"
	}
	return ""
}

func policySummary(p *introspect.Policy) string {
	var parts []string
	if len(p.Audience) > 0 {
		parts = append(parts, "audience ok")
	}
	if len(p.Clients) > 0 {
		parts = append(parts, "client allowed")
	}
	if len(p.Scopes) > 0 {
		parts = append(parts, "scopes "+strings.Join(p.Scopes, " ")+" granted")
	}
	if len(p.AnyScope) > 0 {
		parts = append(parts, "one of "+strings.Join(p.AnyScope, " ")+" granted")
	}
	parts = append(parts, stepUpSummary(p)...)
	for _, c := range p.Claims {
		parts = append(parts, "claim "+c.Path+" ok")
	}
	if len(parts) == 0 {
		return "no audience, clients or scopes required"
	}
	return strings.Join(parts, ", ")
}

func policyHave(p *introspect.Policy, dec *introspect.Decision, e *introspect.Error) string {
	if claimRefusal(e) {
		return "" // the claim's value is not shown, here as in the logs
	}
	switch e.Code {
	case introspect.CodeInsufficientScope:
		return fmt.Sprintf(" (requires %q, granted %q)", e.Scope, dec.ScopeString())
	case introspect.CodeUnauthorizedClient:
		return fmt.Sprintf(" (client_id %q, allowed: %s)", dec.ClientID(), strings.Join(p.Clients, " "))
	case introspect.CodeInvalidToken:
		return fmt.Sprintf(" (aud %q, audience %s)", strings.Join(dec.Audience(), " "), strings.Join(p.Audience, " "))
	case introspect.CodeInsufficientUserAuthentication:
		return stepUpHave(p, dec)
	}
	return ""
}

func policyHint(dec *introspect.Decision, e *introspect.Error) string {
	if claimRefusal(e) {
		return e.Hint
	}
	switch e.Code {
	case introspect.CodeInsufficientScope:
		return fmt.Sprintf("request the token with scope %q (the client must be allowed that scope at the authorization server), or change scopes/any_scope", e.Scope)
	case introspect.CodeUnauthorizedClient:
		return fmt.Sprintf("add %q to clients if this client may use this API, or check the token was issued to the right client (and realm)", dec.ClientID())
	case introspect.CodeInvalidToken:
		return "request the token for this API's audience (the resource/audience parameter or client setting at the authorization server), or fix audience"
	case introspect.CodeInsufficientUserAuthentication:
		return stepUpHint
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// claimRefusal reports a require_claim refusal (an insufficient_scope with
// no scope to ask for).
func claimRefusal(e *introspect.Error) bool {
	return e.Reason == "missing_claim" || e.Reason == "claim_value"
}
