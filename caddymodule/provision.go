package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/tokengate/tokengate/cache"
	"github.com/tokengate/tokengate/introspect"
)

// Defaults, also documented in README.md and on the config fields.
const (
	defaultRealm           = "tokengate"
	defaultTTL             = 5 * time.Minute
	defaultNegativeTTL     = 30 * time.Second
	defaultMaxEntries      = 100_000
	defaultRetryAfter      = 5 * time.Second
	defaultMaxConcurrent   = 64
	defaultJWKSRefreshGate = 10 * time.Second
	defaultLeeway          = 30 * time.Second
	provisionTimeout       = 15 * time.Second
)

// validators holds what must survive a config reload that does not change the
// validation settings: the decision cache, warm JWKS keys, HTTP connections.
// Keyed by a hash of those settings.
var validators = caddy.NewUsagePool()

// live lists the pool entries in use, for the admin API's evict and flush.
var live sync.Map // *poolEntry -> struct{}

type poolEntry struct {
	log       *reloadableCore
	validator *introspect.Validator
	cache     *cache.Cache[*introspect.Verdict]
	keyer     cache.Keyer
	closers   []func()
	cancel    context.CancelFunc
}

// Destruct implements caddy.Destructor: the last config using these settings
// is gone.
func (e *poolEntry) Destruct() error {
	live.Delete(e)
	e.cancel()
	for _, c := range e.closers {
		c()
	}
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

	key, err := h.validationKey()
	if err != nil {
		return err
	}
	val, _, err := validators.LoadOrNew(key, func() (caddy.Destructor, error) {
		return h.newPoolEntry()
	})
	if err != nil {
		return err
	}
	h.poolKey = key
	h.entry = val.(*poolEntry)
	// The newest config's logging is where the operator looks.
	h.entry.log.set(h.logger.Core())
	return nil
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
	h.policy = introspect.Policy{Scopes: h.Scopes, AnyScope: h.AnyScope, Audience: h.Audience, Clients: h.Clients}
	h.realm = quoteRealm(h.Realm)
	h.retry = strconv.Itoa(int((time.Duration(h.RetryAfter) + time.Second - 1) / time.Second))
	return nil
}

// resolvePlaceholders resolves {env.*} and {file.*} in secrets, paths and
// URLs at load time. Secrets read from files lose a trailing newline.
func (h *Handler) resolvePlaceholders() {
	repl := caddy.NewReplacer()
	h.Issuer = repl.ReplaceAll(h.Issuer, "")
	if i := h.Introspect; i != nil {
		i.Endpoint = repl.ReplaceAll(i.Endpoint, "")
		i.ClientID = repl.ReplaceAll(i.ClientID, "")
		i.ClientSecret = strings.TrimRight(repl.ReplaceAll(i.ClientSecret, ""), "\r\n")
		i.PrivateKey = repl.ReplaceAll(i.PrivateKey, "")
		i.TokenEndpoint = repl.ReplaceAll(i.TokenEndpoint, "")
	}
	if j := h.JWT; j != nil {
		j.JWKSURL = repl.ReplaceAll(j.JWKSURL, "")
		j.JWKSFile = repl.ReplaceAll(j.JWKSFile, "")
	}
	if h.Cache == nil {
		h.Cache = new(CacheConfig)
	}
	h.Cache.Redis = repl.ReplaceAll(h.Cache.Redis, "")
	h.Cache.KeySecret = strings.TrimRight(repl.ReplaceAll(h.Cache.KeySecret, ""), "\r\n")
}

func (h *Handler) applyDefaults() {
	if h.Realm == "" {
		h.Realm = defaultRealm
	}
	if h.RetryAfter <= 0 {
		h.RetryAfter = caddy.Duration(defaultRetryAfter)
	}
	if h.MaxTokenLength <= 0 {
		h.MaxTokenLength = introspect.DefaultMaxTokenLength
	}
	// One leeway for every time check (see Handler.Leeway); jwt.leeway is
	// its older spelling. Validate has refused two different values.
	if h.Leeway <= 0 && h.JWT != nil {
		h.Leeway = h.JWT.Leeway
	}
	if h.Leeway <= 0 {
		h.Leeway = caddy.Duration(defaultLeeway)
	}
	if h.JWT != nil && h.JWT.Leeway <= 0 {
		h.JWT.Leeway = h.Leeway
	}
	c := h.Cache
	if c.TTL <= 0 {
		c.TTL = caddy.Duration(defaultTTL)
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = caddy.Duration(defaultNegativeTTL)
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = defaultMaxEntries
	}
	if i := h.Introspect; i != nil {
		if i.AuthMethod == "" {
			i.AuthMethod = "client_secret_basic"
		}
		if i.Timeout <= 0 {
			i.Timeout = caddy.Duration(introspect.DefaultHTTPTimeout)
		}
		if i.MaxConcurrent <= 0 {
			i.MaxConcurrent = defaultMaxConcurrent
		}
	}
	if j := h.JWT; j != nil && j.RefreshInterval <= 0 {
		j.RefreshInterval = caddy.Duration(defaultJWKSRefreshGate)
	}
}

// Validate implements caddy.Validator. It does no I/O; messages name the
// sub-directive at fault.
func (h *Handler) Validate() error {
	if h.Introspect == nil && h.JWT == nil {
		return errors.New("bearer_auth: configure introspect or jwt (or both): nothing can validate tokens")
	}
	if h.Leeway < 0 || h.JWT != nil && h.JWT.Leeway < 0 {
		return errors.New("bearer_auth: leeway must not be negative")
	}
	if h.JWT != nil && h.JWT.Leeway > 0 && h.Leeway > 0 && h.JWT.Leeway != h.Leeway {
		return fmt.Errorf("bearer_auth: leeway %s and jwt.leeway %s differ: they are one setting (for JWTs and introspection alike); give it once", time.Duration(h.Leeway), time.Duration(h.JWT.Leeway))
	}
	if strings.ContainsAny(h.Realm, "\"\\\r\n") {
		return fmt.Errorf("bearer_auth: realm %q must not contain quotes, backslashes or line breaks", h.Realm)
	}
	if h.Issuer != "" {
		if _, err := introspect.MetadataURLs(h.Issuer); err != nil {
			return fmt.Errorf("bearer_auth: issuer: %w", err)
		}
	}
	if i := h.Introspect; i != nil {
		if i.Endpoint == "" && h.Issuer == "" {
			return errors.New("bearer_auth: introspect: set endpoint, or issuer so that it can be discovered")
		}
		if i.Endpoint != "" {
			if err := checkURL(i.Endpoint); err != nil {
				return fmt.Errorf("bearer_auth: introspect: endpoint: %w", err)
			}
		}
		if i.ClientID == "" {
			return errors.New("bearer_auth: introspect: client_id is required (the gateway's own client at the authorization server)")
		}
		if err := h.validateClientAuth(i); err != nil {
			return err
		}
	}
	if j := h.JWT; j != nil {
		if j.JWKSURL != "" && j.JWKSFile != "" {
			return errors.New("bearer_auth: jwt: jwks_url and jwks_file are mutually exclusive")
		}
		if j.JWKSURL == "" && j.JWKSFile == "" && h.Issuer == "" {
			return errors.New("bearer_auth: jwt: set jwks_url or jwks_file, or issuer so that jwks_uri can be discovered")
		}
		if j.JWKSURL != "" {
			if err := checkURL(j.JWKSURL); err != nil {
				return fmt.Errorf("bearer_auth: jwt: jwks_url: %w", err)
			}
		}
		if h.Issuer == "" {
			return errors.New("bearer_auth: jwt: issuer is required: a JWT's iss must be checked (RFC 9068 §4)")
		}
		if len(h.Audience) == 0 {
			return errors.New("bearer_auth: jwt: audience is required: a JWT access token must be meant for this API (RFC 9068 §4)")
		}
		for _, a := range j.Algorithms {
			if err := checkAlgorithm(a); err != nil {
				return fmt.Errorf("bearer_auth: jwt: algorithms: %w", err)
			}
		}
	}
	for i, fc := range h.ForwardClaims {
		if fc.Claim == "" || fc.Header == "" {
			return fmt.Errorf("bearer_auth: forward_claim %d: both a claim and a header name are required", i)
		}
		if strings.EqualFold(fc.Header, "Authorization") || strings.EqualFold(fc.Header, "Host") {
			return fmt.Errorf("bearer_auth: forward_claim %d: header %s cannot be set from a claim", i, fc.Header)
		}
	}
	if h.Cache != nil && h.Cache.Redis != "" {
		if u, err := url.Parse(h.Cache.Redis); err != nil || !strings.HasPrefix(u.Scheme, "redis") && !strings.HasPrefix(u.Scheme, "rediss") && u.Scheme != "unix" {
			return fmt.Errorf("bearer_auth: cache: redis: %q is not a redis://, rediss:// or unix:// URL", h.Cache.Redis)
		}
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

func checkAlgorithm(a string) error {
	switch strings.ToUpper(a) {
	case "NONE":
		return errors.New("none is never accepted (RFC 8725 §3.2)")
	case "HS256", "HS384", "HS512":
		return fmt.Errorf("%s is not accepted: a symmetric key would have to be shared with every resource server (and invites algorithm confusion, RFC 8725 §2.1)", a)
	}
	for _, known := range jwa.SignatureAlgorithms() {
		if string(known) == a {
			return nil
		}
	}
	return fmt.Errorf("unknown algorithm %q", a)
}

// validationKey identifies the settings that determine a token's validity
// (not the per-route policy), so that routes and reloads sharing them share
// one cache.
func (h *Handler) validationKey() (string, error) {
	b, err := json.Marshal(struct {
		Issuer     string
		Audience   []string
		Introspect *IntrospectConfig
		JWT        *JWTConfig
		Cache      *CacheConfig
		Leeway     caddy.Duration
	}{h.Issuer, h.Audience, h.Introspect, h.JWT, h.Cache, h.Leeway})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// redisNamespace scopes the shared Redis tier to the settings that decide a
// token's validity. Without it, a gateway trusting issuer A would accept a
// decision that a gateway trusting issuer B wrote to the same Redis. Settings
// that do not change validity (timeouts, ttl, sizes) are left out, so that a
// fleet whose members differ only in those still shares one namespace.
func (h *Handler) redisNamespace() string {
	type introspectID struct {
		Endpoint, ClientID string
		IntrospectJWT      bool
	}
	type jwtID struct {
		JWKSURL, JWKSFile string
		Algorithms, Types []string
	}
	id := struct {
		Issuer     string
		Audience   []string
		Introspect *introspectID
		JWT        *jwtID
		Leeway     caddy.Duration
	}{Issuer: h.Issuer, Audience: h.Audience, Leeway: h.Leeway}
	if i := h.Introspect; i != nil {
		id.Introspect = &introspectID{i.Endpoint, i.ClientID, i.IntrospectJWT}
	}
	if j := h.JWT; j != nil {
		id.JWT = &jwtID{j.JWKSURL, j.JWKSFile, j.Algorithms, j.Types}
	}
	b, _ := json.Marshal(id)
	sum := sha256.Sum256(b)
	return cache.DefaultNamespace + ":" + hex.EncodeToString(sum[:8])
}

// tombstoneTTL must outlive the longest load (cache.RedisConfig.TombstoneTTL):
// a load that started before an eviction and ends after the tombstone
// expired can write the revoked decision back to Redis. A load may wait for
// an introspection slot (the validator's QueueWait, 100 ms), fetch the JWKS
// in hybrid mode (introspect.DefaultHTTPTimeout) and make two introspection
// calls (a retry after renewing the gateway's own token), each bounded by
// the introspection timeout: 3x that timeout, and never less than the
// cache's default, covers it.
func (h *Handler) tombstoneTTL() time.Duration {
	ttl := cache.DefaultTombstoneTTL
	if i := h.Introspect; i != nil {
		ttl = max(ttl, 3*time.Duration(i.Timeout))
	}
	return ttl
}

// newPoolEntry builds the validator: discovery, keys, introspection client,
// cache. Its background work lives as long as the pool entry, not the config,
// so a reload keeps warm keys and cached decisions.
func (h *Handler) newPoolEntry() (*poolEntry, error) {
	bg, cancel := context.WithCancel(context.Background())
	e := &poolEntry{cancel: cancel, log: newReloadableCore(h.logger.Core())}
	ok := false
	defer func() {
		if !ok {
			cancel()
			for _, c := range e.closers {
				c()
			}
		}
	}()
	pctx, pcancel := context.WithTimeout(bg, provisionTimeout)
	defer pcancel()

	logger := zap.New(e.log).Named(h.logger.Name())
	var md *introspect.Metadata
	needDiscovery := h.Introspect != nil && (h.Introspect.Endpoint == "" ||
		h.Introspect.AuthMethod == "bearer" && h.Introspect.TokenEndpoint == "") ||
		h.JWT != nil && h.JWT.JWKSURL == "" && h.JWT.JWKSFile == ""
	if needDiscovery {
		var err error
		md, err = introspect.Discover(pctx, introspect.NewHTTPClient(introspect.DefaultHTTPTimeout), h.Issuer)
		if err != nil {
			return nil, fmt.Errorf("bearer_auth: issuer: %w", err)
		}
		logger.Info("discovered authorization server metadata", zap.String("issuer", md.Issuer),
			zap.String("source", md.Source), zap.String("introspection_endpoint", md.IntrospectionEndpoint),
			zap.String("jwks_uri", md.JWKSURI))
	}

	var secret []byte
	if h.Cache.KeySecret != "" {
		secret = []byte(h.Cache.KeySecret)
	}
	e.keyer = cache.NewKeyer(secret)
	cfg := cache.Config{MaxEntries: h.Cache.MaxEntries, Observer: h.metrics, Logger: logger.Named("cache")}
	if h.Cache.Redis != "" {
		cfg.Redis = &cache.RedisConfig{URL: h.Cache.Redis, Namespace: h.redisNamespace(),
			Timeout: time.Duration(h.Cache.RedisTimeout), TombstoneTTL: h.tombstoneTTL()}
	}
	c, err := cache.New[*introspect.Verdict](cfg, cache.JSONCodec[*introspect.Verdict]{})
	if err != nil {
		return nil, fmt.Errorf("bearer_auth: cache: %w", err)
	}
	e.cache = c
	e.closers = append(e.closers, func() { _ = c.Close() })

	v := &introspect.Validator{
		TTL:         time.Duration(h.Cache.TTL),
		NegativeTTL: time.Duration(h.Cache.NegativeTTL),
		StaleGrace:  time.Duration(h.Cache.StaleGrace),
		Leeway:      time.Duration(h.Leeway),
		OnBreakerChange: func(from, to string) {
			if to == "open" {
				logger.Error("authorization server failing: introspection calls now fail fast with 503; one probe per second until it answers",
					zap.String("circuit", to))
			} else {
				logger.Info("introspection circuit state changed", zap.String("from", from), zap.String("to", to))
			}
		},
	}
	if i := h.Introspect; i != nil {
		endpoint := i.Endpoint
		if endpoint == "" {
			if md.IntrospectionEndpoint == "" {
				return nil, fmt.Errorf("bearer_auth: introspect: the metadata of %s has no introspection_endpoint; set introspect.endpoint", h.Issuer)
			}
			endpoint = md.IntrospectionEndpoint
		}
		auth, err := h.newClientAuth(i, md)
		if err != nil {
			return nil, err
		}
		v.Introspector = &introspect.Introspector{
			Endpoint:   endpoint,
			Auth:       auth,
			HTTPClient: introspect.NewHTTPClient(time.Duration(i.Timeout)),
			Timeout:    time.Duration(i.Timeout),
			Issuer:     h.Issuer,
			Leeway:     time.Duration(h.Leeway),
			Observer:   h.metrics,
		}
		v.MaxConcurrent = i.MaxConcurrent
		v.IntrospectJWTs = i.IntrospectJWT
	}
	if j := h.JWT; j != nil {
		verifier, err := h.newJWTVerifier(pctx, bg, md, e, logger)
		if err != nil {
			return nil, err
		}
		v.JWT = verifier
		v.JWTIssuer = h.Issuer
	}

	v.Cache = c
	v.Keyer = e.keyer
	v.Init()
	e.validator = v
	live.Store(e, struct{}{})
	ok = true
	return e, nil
}

// Cleanup implements caddy.CleanerUpper: release this config's use of the
// shared validator (destroyed when no config uses it any more).
func (h *Handler) Cleanup() error {
	if h.poolKey == "" {
		return nil
	}
	_, err := validators.Delete(h.poolKey)
	return err
}
