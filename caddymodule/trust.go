package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tokengate/tokengate/introspect"
)

// TrustConfig is another authorization server whose tokens a route accepts
// (trust <issuer> { … }). It has its own keys or introspection, its own
// decision cache, Redis namespace, JWKS refresh gate and circuit breaker;
// the route's cache settings, leeway and policy apply to it as well.
type TrustConfig struct {
	// The issuer identifier: the exact iss of its JWTs (which is how a
	// token is routed here), and where its metadata is discovered.
	Issuer string `json:"issuer"`
	// At least one of these must be in the token's aud. Default: the
	// route's audience.
	Audience []string `json:"audience,omitempty"`
	// RFC 7662 introspection at this issuer.
	Introspect *IntrospectConfig `json:"introspect,omitempty"`
	// Local verification of this issuer's JWTs, with its keys only. An
	// empty block uses its discovered jwks_uri.
	JWT *JWTConfig `json:"jwt,omitempty"`
}

// RequireClaim is one require_claim: the claim must equal one of the values
// or, as an array, contain one. A JSON number matches its decimal string.
type RequireClaim struct {
	// The claim name; a dotted path reaches nested claims.
	Claim string `json:"claim"`
	// The accepted values; one must match.
	Values []string `json:"values"`
}

// issuerRoute is what ServeHTTP needs for tokens one validator judged.
type issuerRoute struct {
	validator *introspect.Validator // nil: tokens no issuer judged
	policy    introspect.Policy
	metrics   *issuerMetrics
}

// claimRequirements maps require_claims to the policy's rules.
func (h *Handler) claimRequirements() []introspect.ClaimRequirement {
	if len(h.RequireClaims) == 0 {
		return nil
	}
	out := make([]introspect.ClaimRequirement, len(h.RequireClaims))
	for i, rc := range h.RequireClaims {
		out[i] = introspect.ClaimRequirement{Path: rc.Claim, Values: rc.Values}
	}
	return out
}

// options maps the introspect block to introspect's options.
func (i *IntrospectConfig) options() *introspect.IntrospectOptions {
	if i == nil {
		return nil
	}
	return &introspect.IntrospectOptions{
		Endpoint:          i.Endpoint,
		ClientID:          i.ClientID,
		ClientSecret:      i.ClientSecret,
		AuthMethod:        i.AuthMethod,
		PrivateKeyFile:    i.PrivateKey,
		PrivateKeyID:      i.PrivateKeyID,
		TokenEndpoint:     i.TokenEndpoint,
		TokenScope:        i.TokenScope,
		AssertionAudience: i.AssertionAudience,
		AssertionLifetime: time.Duration(i.AssertionLifetime),
		Timeout:           time.Duration(i.Timeout),
		MaxConcurrent:     i.MaxConcurrent,
		IntrospectJWTs:    i.IntrospectJWT,
	}
}

// options maps the jwt block to introspect's options.
func (j *JWTConfig) options() *introspect.JWTOptions {
	if j == nil {
		return nil
	}
	return &introspect.JWTOptions{
		JWKSURL:               j.JWKSURL,
		JWKSFile:              j.JWKSFile,
		Algorithms:            j.Algorithms,
		Types:                 j.Types,
		RefreshInterval:       time.Duration(j.RefreshInterval),
		AllowStartWithoutKeys: j.AllowStartWithoutKeys,
	}
}

// resolvePlaceholders resolves {env.*} and {file.*} at load time; secrets
// read from files lose a trailing newline.
func (i *IntrospectConfig) resolvePlaceholders(repl *caddy.Replacer) {
	if i == nil {
		return
	}
	i.Endpoint = repl.ReplaceAll(i.Endpoint, "")
	i.ClientID = repl.ReplaceAll(i.ClientID, "")
	i.ClientSecret = strings.TrimRight(repl.ReplaceAll(i.ClientSecret, ""), "\r\n")
	i.PrivateKey = repl.ReplaceAll(i.PrivateKey, "")
	i.TokenEndpoint = repl.ReplaceAll(i.TokenEndpoint, "")
}

func (j *JWTConfig) resolvePlaceholders(repl *caddy.Replacer) {
	if j == nil {
		return
	}
	j.JWKSURL = repl.ReplaceAll(j.JWKSURL, "")
	j.JWKSFile = repl.ReplaceAll(j.JWKSFile, "")
}

// writeDefaults copies introspect's defaults back into the blocks, so that
// the JSON a user reads shows the values in force.
func writeDefaults(i *IntrospectConfig, j *JWTConfig, cfg introspect.Config) {
	if i != nil {
		i.AuthMethod = cfg.Introspect.AuthMethod
		i.Timeout = caddy.Duration(cfg.Introspect.Timeout)
		i.MaxConcurrent = cfg.Introspect.MaxConcurrent
	}
	if j != nil {
		j.RefreshInterval = caddy.Duration(cfg.JWT.RefreshInterval)
	}
}

// resolveTrustPlaceholders and applyTrustDefaults do for every trust block
// what the route's own introspect and jwt blocks get.
func (h *Handler) resolveTrustPlaceholders(repl *caddy.Replacer) {
	for i := range h.Trust {
		t := &h.Trust[i]
		t.Issuer = repl.ReplaceAll(t.Issuer, "")
		t.Introspect.resolvePlaceholders(repl)
		t.JWT.resolvePlaceholders(repl)
	}
}

func (h *Handler) applyTrustDefaults() {
	for i := range h.Trust {
		t := &h.Trust[i]
		// One leeway for the route, whichever issuer signed the token.
		if t.JWT != nil && t.JWT.Leeway <= 0 {
			t.JWT.Leeway = h.Leeway
		}
		writeDefaults(t.Introspect, t.JWT, h.trustConfig(t).WithDefaults())
	}
}

// trustConfig is a trusted issuer's validator configuration: its own
// issuer, audience, introspection and keys, and the route's cache, leeway
// and token length.
func (h *Handler) trustConfig(t *TrustConfig) introspect.Config {
	cfg := h.introspectConfig()
	cfg.Issuer = t.Issuer
	cfg.Audience = t.Audience
	if len(cfg.Audience) == 0 {
		cfg.Audience = h.Audience
	}
	cfg.Introspect = t.Introspect.options()
	cfg.JWT = t.JWT.options()
	return cfg
}

// issuerConfigs are the validator configurations of the route: its own
// issuer's, then each trusted issuer's in order (Issuers routes between
// them in that order).
func (h *Handler) issuerConfigs() []introspect.Config {
	out := []introspect.Config{h.introspectConfig()}
	for i := range h.Trust {
		out = append(out, h.trustConfig(&h.Trust[i]))
	}
	return out
}

// policyFor is the route's policy as it applies to the tokens of the issuer
// cfg configures: the audience is that issuer's (the API may be registered
// under another name at each).
func (h *Handler) policyFor(cfg introspect.Config) introspect.Policy {
	p := h.policy
	p.Audience = cfg.Audience
	return p
}

// validateTrust checks trust and require_claims without I/O; messages name
// the block at fault.
func (h *Handler) validateTrust() error {
	if err := introspect.CheckClaimRequirements(h.claimRequirements()); err != nil {
		return fmt.Errorf("bearer_auth: %w", err)
	}
	if len(h.Trust) == 0 {
		return nil
	}
	if h.Issuer == "" {
		return errors.New("bearer_auth: trust needs the route's own issuer: a JWT is routed to the issuer its iss names")
	}
	seen := map[string]bool{h.Issuer: true}
	for i := range h.Trust {
		t := &h.Trust[i]
		if t.Issuer == "" {
			return fmt.Errorf("bearer_auth: trust %d: the issuer is required", i)
		}
		if seen[t.Issuer] {
			return fmt.Errorf("bearer_auth: trust %s: this issuer is already trusted by this route", t.Issuer)
		}
		seen[t.Issuer] = true
		if t.Introspect == nil && t.JWT == nil {
			return fmt.Errorf("bearer_auth: trust %s: configure jwt or introspect (or both) for it", t.Issuer)
		}
		if t.JWT != nil && t.JWT.Leeway > 0 && h.Leeway > 0 && t.JWT.Leeway != h.Leeway {
			return fmt.Errorf("bearer_auth: trust %s: jwt.leeway %s differs from the route's leeway %s: one leeway applies to every issuer of a route", t.Issuer, time.Duration(t.JWT.Leeway), time.Duration(h.Leeway))
		}
		if slices.Contains(t.Audience, "") {
			return fmt.Errorf("bearer_auth: trust %s: audience must not be empty", t.Issuer)
		}
		if err := h.trustConfig(t).Check(); err != nil {
			return fmt.Errorf("bearer_auth: trust %s: %w", t.Issuer, err)
		}
	}
	return nil
}

// settingsKey identifies the settings that decide a token's validity at one
// issuer (not the per-route policy), so that routes and reloads sharing
// them share one validator: its cache, warm keys and breaker. A trusted
// issuer and the same issuer configured alike as some route's own issuer
// get the same key.
func (h *Handler) settingsKey(issuer string, audience []string, i *IntrospectConfig, j *JWTConfig) (string, error) {
	b, err := json.Marshal(struct {
		Issuer     string
		Audience   []string
		Introspect *IntrospectConfig
		JWT        *JWTConfig
		Cache      *CacheConfig
		Leeway     caddy.Duration
	}{issuer, audience, i, j, h.Cache, h.Leeway})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// provisionIssuers takes a pooled validator for every trusted issuer (the
// route's own is h.entry) and routes between them. Each key is recorded as
// soon as it is taken, so that Cleanup releases it even if a later issuer
// fails.
func (h *Handler) provisionIssuers() error {
	vs := []*introspect.Validator{h.entry.validator}
	for i := range h.Trust {
		t := &h.Trust[i]
		cfg := h.trustConfig(t)
		key, err := h.settingsKey(t.Issuer, cfg.Audience, t.Introspect, t.JWT)
		if err != nil {
			return err
		}
		val, _, err := validators.LoadOrNew(key, func() (caddy.Destructor, error) {
			e, err := h.newPoolEntry(cfg)
			if err != nil {
				return nil, fmt.Errorf("trust %s: %w", t.Issuer, err)
			}
			return e, nil
		})
		if err != nil {
			return err
		}
		h.trustKeys = append(h.trustKeys, key)
		e := val.(*poolEntry)
		e.log.set(h.logger.Core())
		vs = append(vs, e.validator)
	}
	return h.bindIssuers(vs)
}

// bindIssuers routes between validators (the route's own issuer first) and
// prepares, for each, the policy and metrics its tokens are judged and
// counted with. The doctor binds its own validators the same way.
func (h *Handler) bindIssuers(validators []*introspect.Validator) error {
	is, err := introspect.NewIssuers(validators...)
	if err != nil {
		return fmt.Errorf("bearer_auth: %w", err)
	}
	routes := make([]issuerRoute, 0, len(validators)+1)
	for _, v := range validators {
		cfg := v.Config()
		routes = append(routes, issuerRoute{validator: v, policy: h.policyFor(cfg), metrics: h.metrics.forIssuer(cfg.Issuer)})
	}
	// Last: tokens refused before any issuer judged them.
	routes = append(routes, issuerRoute{policy: h.policy, metrics: h.metrics.none})
	h.issuers, h.routes = is, routes
	return nil
}

// routeOf finds v's route; a handful of pointer compares, cheaper than a
// map on the warm path.
func (h *Handler) routeOf(v *introspect.Validator) *issuerRoute {
	for i := range h.routes {
		if h.routes[i].validator == v {
			return &h.routes[i]
		}
	}
	return &h.routes[len(h.routes)-1]
}

// Interface guards
var _ introspect.Observer = (*issuerMetrics)(nil)
