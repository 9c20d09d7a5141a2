package diagnose

import (
	"fmt"
	"strings"
	"time"

	"github.com/tokengate/tokengate/introspect"
)

// The upstream token checks run only for a block with upstream_token, so
// the report of every other block reads as before.
const (
	// CheckUpstreamToken shows the upstream token settings in force: key,
	// alg, kid, next kid, iss, aud, ttl, the JWKS path, copied claims.
	CheckUpstreamToken = "upstream_token"
	// CheckUpstreamTokenSample shows what the upstream would receive for
	// the --token: the header and claims of a freshly minted token, never
	// the token or its signature.
	CheckUpstreamTokenSample = "upstream_token_sample"
)

func (d *doctor) checkUpstreamToken() {
	m := d.t.UpstreamToken
	if m == nil {
		return
	}
	if d.skipAll != "" {
		d.skip(CheckUpstreamToken, d.skipAll)
		return
	}
	s := m.Settings()
	detail := fmt.Sprintf("signs %s with kid %s (%s)", s.Algorithm, s.KeyID, s.SigningKeyFile)
	if s.NextKeyID != "" {
		detail += fmt.Sprintf(", publishes next kid %s (%s)", s.NextKeyID, s.NextSigningKeyFile)
	}
	detail += fmt.Sprintf("; iss %s, aud %s, ttl %s; copies %s when present", s.Issuer, strings.Join(s.Audience, " "), s.TTL, strings.Join(s.Claims, " "))
	data := map[string]any{"issuer": s.Issuer, "audience": s.Audience, "ttl": s.TTL.String(), "alg": s.Algorithm,
		"kid": s.KeyID, "signing_key": s.SigningKeyFile, "claims": s.Claims, "jwks_path": s.JWKSPath}
	if s.NextKeyID != "" {
		data["next_kid"], data["next_signing_key"] = s.NextKeyID, s.NextSigningKeyFile
	}
	if s.JWKSPath == "" {
		d.add(CheckUpstreamToken, StatusPass, detail+"; JWKS not served (no jwks_path)", "", data)
		return
	}
	detail += "; JWKS at " + s.JWKSPath
	if len(d.t.Paths) > 0 && !anyPathMatches(d.t.Paths, s.JWKSPath) {
		d.add(CheckUpstreamToken, StatusWarn, detail+", outside this block's paths "+strings.Join(d.t.Paths, " "),
			"the handler serves the JWKS only to requests that reach it: choose a jwks_path within the block's paths, or widen its matcher", data)
		return
	}
	d.add(CheckUpstreamToken, StatusPass, detail, "", data)
}

// sampleUpstreamToken mints a token for the --token's decision with the
// route's own minter, and shows its header and claims. The token and its
// signature are never shown: a sample is a real credential for the upstream
// until it expires.
func (d *doctor) sampleUpstreamToken() {
	m := d.t.UpstreamToken
	if m == nil {
		return
	}
	if d.allowed == nil {
		d.skip(CheckUpstreamTokenSample, "skipped: the token is not let through, so no upstream token is made")
		return
	}
	tok, err := m.Mint(d.allowed)
	if err != nil {
		ie := introspect.AsError(err)
		d.add(CheckUpstreamTokenSample, StatusFail, fmt.Sprintf("%s: %s (%s)", ie.Code, ie.Description, ie.Reason), ie.Hint,
			map[string]any{"error": string(ie.Code), "reason": ie.Reason})
		return
	}
	hdr, claims, ok := introspect.UnverifiedJWT(tok.JWT)
	if !ok {
		d.add(CheckUpstreamTokenSample, StatusFail, "the minted token does not parse as a JWT", "", nil)
		return
	}
	var parts []string
	for _, k := range []string{"sub", "client_id", "scope", "acr"} {
		if v, ok := claims[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %v", k, v))
		}
	}
	life := tok.ExpiresAt.Sub(tok.IssuedAt)
	detail := fmt.Sprintf("the upstream would get typ %v, alg %v, kid %v; %s; expires in %s",
		hdr["typ"], hdr["alg"], hdr["kid"], strings.Join(parts, ", "), life)
	if life < m.Settings().TTL {
		detail += " (the caller's token expires then)"
	}
	d.add(CheckUpstreamTokenSample, StatusPass, detail, "", map[string]any{
		"header": hdr, "claims": claims, "expires": tok.ExpiresAt.UTC().Format(time.RFC3339)})
}

// anyPathMatches reports whether p may match one of Caddy's path matcher
// patterns: case-insensitive, * matching any run of characters. It may say
// yes where Caddy says no, never the other way round: it only decides
// whether to warn.
func anyPathMatches(patterns []string, p string) bool {
	p = strings.ToLower(p)
	for _, pat := range patterns {
		if globMatch(strings.ToLower(pat), p) {
			return true
		}
	}
	return false
}

func globMatch(pat, s string) bool {
	parts := strings.Split(pat, "*")
	if len(parts) == 1 {
		return pat == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, last)
}
