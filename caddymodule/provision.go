package caddymodule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/tokengate/tokengate/cache"
	"github.com/tokengate/tokengate/introspect"
)

// Defaults of the Caddy-only settings; introspect.Config documents the rest.
const (
	defaultRealm      = "tokengate"
	defaultRetryAfter = 5 * time.Second
)

// validators holds what must survive a config reload that does not change the
// validation settings: the decision cache, warm JWKS keys, HTTP connections.
// Keyed by a hash of those settings.
var validators = caddy.NewUsagePool()

// live lists the pool entries in use, for the admin API's evict and flush.
var live sync.Map // *poolEntry -> struct{}

// poolEntry is one validator shared by every route and config with the same
// validation settings. Its logger follows the newest config's (see
// reloadableCore): Caddy closes an unloaded config's log writers.
type poolEntry struct {
	log       *reloadableCore
	validator *introspect.Validator
}

// Destruct implements caddy.Destructor: the last config using these settings
// is gone.
func (e *poolEntry) Destruct() error {
	live.Delete(e)
	e.validator.Close()
	return nil
}

// Provision implements caddy.Provisioner.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.metrics = getMetrics()
	if err := h.metrics.register(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}

	if err := h.prepare(); err != nil {
		return err
	}
	if err := h.provisionUpstreamToken(); err != nil {
		return err
	}
	if err := dpopMetrics().register(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}

	key, err := h.validationKey()
	if err != nil {
		return err
	}
	val, _, err := validators.LoadOrNew(key, func() (caddy.Destructor, error) {
		return h.newPoolEntry(h.introspectConfig())
	})
	if err != nil {
		return err
	}
	h.poolKey = key
	h.entry = val.(*poolEntry)
	h.provisionDPoP()
	// The newest config's logging is where the operator looks.
	h.entry.log.set(h.logger.Core())
	return h.provisionIssuers()
}

// prepare does everything Provision does short of I/O: placeholders,
// defaults, validation, and the per-route state ServeHTTP needs. The doctor
// uses it too, so both always read a config the same way.
func (h *Handler) prepare() error {
	h.resolvePlaceholders()
	h.applyDefaults()
	if err := h.Validate(); err != nil {
		return err
	}
	h.extractor = introspect.Extractor{AllowForm: h.AllowFormToken, AllowQuery: h.AllowQueryToken, MaxLength: h.MaxTokenLength}
	h.policy = introspect.Policy{Scopes: h.Scopes, AnyScope: h.AnyScope, Audience: h.Audience, Clients: h.Clients,
		ACRValues: h.ACRValues, MaxAge: time.Duration(h.MaxAge), Leeway: time.Duration(h.Leeway),
		Claims: h.claimRequirements()}
	h.realm = quoteRealm(h.Realm)
	h.prepareForwardClaims()
	h.retry = strconv.Itoa(int((time.Duration(h.RetryAfter) + time.Second - 1) / time.Second))
	if err := h.prepareDPoP(); err != nil {
		return err
	}
	// After prepareDPoP: the document advertises the route's DPoP mode.
	h.prepareResourceMetadata()
	return nil
}

// resolvePlaceholders resolves {env.*} and {file.*} in secrets, paths and
// URLs at load time. Secrets read from files lose a trailing newline.
func (h *Handler) resolvePlaceholders() {
	repl := caddy.NewReplacer()
	h.Issuer = repl.ReplaceAll(h.Issuer, "")
	h.Introspect.resolvePlaceholders(repl)
	h.JWT.resolvePlaceholders(repl)
	h.resolveTrustPlaceholders(repl)
	if h.Cache == nil {
		h.Cache = new(CacheConfig)
	}
	h.Cache.Redis = repl.ReplaceAll(h.Cache.Redis, "")
	h.Cache.KeySecret = strings.TrimRight(repl.ReplaceAll(h.Cache.KeySecret, ""), "\r\n")
}

// applyDefaults fills the Caddy-only settings, and writes introspect's
// defaults back into the config, so that the JSON a user reads (caddy adapt,
// the admin API's /config) shows the values in force.
func (h *Handler) applyDefaults() {
	h.applyResourceMetadataDefaults()
	if h.Realm == "" {
		h.Realm = defaultRealm
	}
	if h.RetryAfter <= 0 {
		h.RetryAfter = caddy.Duration(defaultRetryAfter)
	}
	// One leeway for every time check (see Handler.Leeway); jwt.leeway is
	// its older spelling. Validate refuses two different values.
	if h.Leeway <= 0 && h.JWT != nil {
		h.Leeway = h.JWT.Leeway
	}
	if h.JWT != nil && h.JWT.Leeway <= 0 {
		h.JWT.Leeway = h.Leeway
	}
	cfg := h.introspectConfig().WithDefaults()
	h.Leeway = caddy.Duration(cfg.Leeway)
	if h.JWT != nil && h.JWT.Leeway <= 0 {
		h.JWT.Leeway = h.Leeway
	}
	h.MaxTokenLength = cfg.MaxTokenLength
	c := h.Cache
	c.TTL = caddy.Duration(cfg.Cache.TTL)
	c.NegativeTTL = caddy.Duration(cfg.Cache.NegativeTTL)
	c.MaxEntries = cfg.Cache.MaxEntries
	writeDefaults(h.Introspect, h.JWT, cfg)
	h.applyTrustDefaults()
}

// introspectConfig maps the handler's config to the validator's: the glue's
// one job here. Everything about tokens is decided by introspect.New.
func (h *Handler) introspectConfig() introspect.Config {
	cfg := introspect.Config{
		Issuer:         h.Issuer,
		Audience:       h.Audience,
		Leeway:         time.Duration(h.Leeway),
		MaxTokenLength: h.MaxTokenLength,
	}
	if c := h.Cache; c != nil {
		cfg.Cache = introspect.CacheOptions{
			TTL:          time.Duration(c.TTL),
			NegativeTTL:  time.Duration(c.NegativeTTL),
			MaxEntries:   c.MaxEntries,
			RedisURL:     c.Redis,
			RedisTimeout: time.Duration(c.RedisTimeout),
			KeySecret:    c.KeySecret,
			StaleGrace:   time.Duration(c.StaleGrace),
		}
	}
	cfg.Introspect = h.Introspect.options()
	cfg.JWT = h.JWT.options()
	return cfg
}

// Validate implements caddy.Validator. It does no I/O; messages name the
// sub-directive at fault. The token settings are checked by introspect
// (Config.Check), the same rules New applies.
func (h *Handler) Validate() error {
	if strings.ContainsAny(h.Realm, "\"\\\r\n") {
		return fmt.Errorf("bearer_auth: realm %q must not contain quotes, backslashes or line breaks", h.Realm)
	}
	if h.Leeway < 0 || h.JWT != nil && h.JWT.Leeway < 0 {
		return errors.New("bearer_auth: leeway must not be negative")
	}
	if h.JWT != nil && h.JWT.Leeway > 0 && h.Leeway > 0 && h.JWT.Leeway != h.Leeway {
		return fmt.Errorf("bearer_auth: leeway %s and jwt.leeway %s differ: they are one setting (for JWTs and introspection alike); give it once", time.Duration(h.Leeway), time.Duration(h.JWT.Leeway))
	}
	if err := h.introspectConfig().Check(); err != nil {
		return fmt.Errorf("bearer_auth: %w", err)
	}
	if err := h.validateStepUpAndMetadata(); err != nil {
		return err
	}
	for i, fc := range h.ForwardClaims {
		if fc.Claim == "" || fc.Header == "" {
			return fmt.Errorf("bearer_auth: forward_claim %d: both a claim and a header name are required", i)
		}
		if strings.EqualFold(fc.Header, "Authorization") || strings.EqualFold(fc.Header, "Host") {
			return fmt.Errorf("bearer_auth: forward_claim %d: header %s cannot be set from a claim", i, fc.Header)
		}
	}
	if err := h.checkUpstreamToken(); err != nil {
		return err
	}
	if err := h.DPoP.validate(); err != nil {
		return err
	}
	if h.Cache != nil && h.Cache.Redis != "" {
		// The cache's own rules, without connecting; its errors never
		// quote the URL, which may hold a password.
		if err := cache.CheckRedisURL(h.Cache.Redis); err != nil {
			return fmt.Errorf("bearer_auth: %w", err)
		}
	}
	return h.validateTrust()
}

// validationKey identifies the settings that determine a token's validity
// (not the per-route policy), so that routes and reloads sharing them share
// one validator.
func (h *Handler) validationKey() (string, error) {
	return h.settingsKey(h.Issuer, h.Audience, h.Introspect, h.JWT)
}

// newPoolEntry builds the validator. Its background work lives as long as
// the pool entry, not the config, so a reload keeps warm keys and cached
// decisions.
func (h *Handler) newPoolEntry(cfg introspect.Config) (*poolEntry, error) {
	e := &poolEntry{log: newReloadableCore(h.logger.Core())}
	if cfg.Issuer != "" {
		// A route may trust several issuers: each line says whose.
		e.log.fields = []zap.Field{zap.String("trusted_issuer", cfg.Issuer)}
	}
	cfg.Logger = zap.New(e.log).Named(h.logger.Name())
	cfg.Observer = h.metrics.forIssuer(cfg.Issuer)
	v, err := introspect.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("bearer_auth: %w", err)
	}
	e.validator = v
	live.Store(e, struct{}{})
	return e, nil
}

// Cleanup implements caddy.CleanerUpper: release this config's use of the
// shared validator (destroyed when no config uses it any more).
func (h *Handler) Cleanup() error {
	var errs []error
	for _, key := range h.trustKeys {
		if _, err := validators.Delete(key); err != nil {
			errs = append(errs, err)
		}
	}
	h.trustKeys = nil
	if h.poolKey != "" {
		if _, err := validators.Delete(h.poolKey); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
