package introspect

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"go.uber.org/zap"

	"github.com/tokengate/tokengate/cache"
	"github.com/tokengate/tokengate/introspect/asclient"
	"github.com/tokengate/tokengate/introspect/jwt"
)

// Config is everything a Validator is built from. New applies the defaults
// below, checks it (Check, without I/O), then does the I/O: discovery, the
// first JWKS fetch, reading key files. A plain net/http middleware needs
// nothing else.
type Config struct {
	// Issuer is the authorization server's issuer identifier: discovery
	// (RFC 8414, then OpenID Connect), the required iss of JWTs, and the
	// default aud of client assertions.
	Issuer string
	// Audience: a token's aud must contain one of these. Required with JWT.
	Audience []string
	// Leeway is the clock skew allowed on exp, nbf and iat on every path.
	// Default 30s.
	Leeway time.Duration
	// MaxTokenLength bounds a JWT before any decoding. Default
	// DefaultMaxTokenLength.
	MaxTokenLength int
	// Introspect enables RFC 7662 introspection; nil means none.
	Introspect *IntrospectOptions
	// JWT enables local JWT verification; nil means none. With both,
	// JWT-shaped tokens of Issuer are verified locally and everything else
	// is introspected.
	JWT *JWTOptions
	// Cache configures the decision cache.
	Cache CacheOptions
	// Logger receives the operator's lines. Default: none.
	Logger *zap.Logger
	// Observer receives metrics. Default: none.
	Observer Observer
	// ProvisionTimeout bounds New's I/O. Default 15s.
	ProvisionTimeout time.Duration
}

// IntrospectOptions configure RFC 7662 introspection and the gateway's own
// client authentication.
type IntrospectOptions struct {
	// Endpoint is the introspection endpoint. Default: discovered.
	Endpoint string
	// ClientID and ClientSecret are the gateway's own client.
	ClientID, ClientSecret string
	// AuthMethod: client_secret_basic (default), client_secret_post,
	// client_secret_jwt, private_key_jwt, or bearer (the gateway's own
	// client_credentials token from TokenEndpoint).
	AuthMethod string
	// PrivateKeyFile (PEM or JWK) and PrivateKeyID for private_key_jwt,
	// and for bearer to get its token with it.
	PrivateKeyFile, PrivateKeyID string
	// TokenEndpoint for bearer. Default: discovered.
	TokenEndpoint string
	// TokenScope: the scopes the gateway asks for its own token.
	TokenScope []string
	// AssertionAudience overrides the aud of client assertions (default:
	// Issuer, else the endpoint the assertion is sent to).
	AssertionAudience string
	// AssertionLifetime of client assertions. Default 2m; at most
	// asclient.MaxAssertionLifetime.
	AssertionLifetime time.Duration
	// Timeout bounds one call. Default asclient.DefaultHTTPTimeout.
	Timeout time.Duration
	// MaxConcurrent caps calls in flight. Default 64.
	MaxConcurrent int
	// IntrospectJWTs also introspects JWTs that verified locally.
	IntrospectJWTs bool
}

// JWTOptions configure local JWT verification and where its keys come from.
type JWTOptions struct {
	// JWKSURL, else JWKSFile, else the discovered jwks_uri.
	JWKSURL, JWKSFile string
	// Algorithms is the allowlist (default: what each key declares).
	Algorithms []string
	// Types are accepted typ values besides at+jwt.
	Types []string
	// RefreshInterval: an unknown kid refetches the JWKS at most this
	// often. Default 10s.
	RefreshInterval time.Duration
	// AllowStartWithoutKeys makes New succeed when the first JWKS fetch
	// fails (tokens then get 503 until the keys arrive).
	AllowStartWithoutKeys bool
}

// CacheOptions configure the decision cache.
type CacheOptions struct {
	// TTL bounds reuse of a good decision (never past exp). Default 5m.
	TTL time.Duration
	// NegativeTTL is how long an invalid_token verdict is reused.
	// Default 30s.
	NegativeTTL time.Duration
	// MaxEntries bounds the memory tier. Default 100000.
	MaxEntries int
	// RedisURL enables the shared tier; RedisNamespace scopes it (default:
	// derived from the validation settings, see RedisNamespace).
	RedisURL, RedisNamespace string
	// RedisTimeout bounds each Redis call. Default cache.DefaultRedisTimeout.
	RedisTimeout time.Duration
	// KeySecret makes cache keys HMAC-SHA256 instead of SHA-256.
	KeySecret string
	// StaleGrace: see Validator. Default 0 (off).
	StaleGrace time.Duration
}

// Observer receives every metric the validator's parts report.
type Observer interface {
	cache.Observer
	asclient.Observer
	jwt.JWKSObserver
}

// Defaults of Config.
const (
	DefaultLeeway           = 30 * time.Second
	DefaultTTL              = 5 * time.Minute
	DefaultNegativeTTL      = 30 * time.Second
	DefaultMaxEntries       = 100_000
	DefaultMaxConcurrent    = 64
	DefaultRefreshInterval  = 10 * time.Second
	DefaultProvisionTimeout = 15 * time.Second
)

// AuthMethods are the values IntrospectOptions.AuthMethod accepts.
var AuthMethods = []string{"client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "bearer"}

// WithDefaults returns cfg with every zero value replaced by its default.
func (cfg Config) WithDefaults() Config {
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.MaxTokenLength == 0 {
		cfg.MaxTokenLength = DefaultMaxTokenLength
	}
	if cfg.ProvisionTimeout == 0 {
		cfg.ProvisionTimeout = DefaultProvisionTimeout
	}
	c := &cfg.Cache
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = DefaultNegativeTTL
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if i := cfg.Introspect; i != nil {
		o := *i
		if o.AuthMethod == "" {
			o.AuthMethod = "client_secret_basic"
		}
		if o.Timeout == 0 {
			o.Timeout = asclient.DefaultHTTPTimeout
		}
		if o.MaxConcurrent == 0 {
			o.MaxConcurrent = DefaultMaxConcurrent
		}
		cfg.Introspect = &o
	}
	if j := cfg.JWT; j != nil {
		o := *j
		if o.RefreshInterval == 0 {
			o.RefreshInterval = DefaultRefreshInterval
		}
		cfg.JWT = &o
	}
	return cfg
}

// Check reports the first configuration mistake, without I/O. Messages name
// the setting at fault. New calls it; a config UI can too.
func (cfg Config) Check() error {
	if cfg.Introspect == nil && cfg.JWT == nil {
		return errors.New("configure introspect or jwt (or both): nothing can validate tokens")
	}
	if cfg.Leeway < 0 || cfg.MaxTokenLength < 0 || cfg.Cache.TTL < 0 || cfg.Cache.NegativeTTL < 0 || cfg.Cache.StaleGrace < 0 || cfg.Cache.MaxEntries < 0 {
		return errors.New("durations and sizes must not be negative")
	}
	if cfg.Issuer != "" {
		if _, err := asclient.MetadataURLs(cfg.Issuer); err != nil {
			return fmt.Errorf("issuer: %w", err)
		}
	}
	if i := cfg.Introspect; i != nil {
		if err := cfg.checkIntrospect(i); err != nil {
			return fmt.Errorf("introspect: %w", err)
		}
	}
	if j := cfg.JWT; j != nil {
		if err := cfg.checkJWT(j); err != nil {
			return fmt.Errorf("jwt: %w", err)
		}
	}
	return nil
}

func (cfg Config) checkIntrospect(i *IntrospectOptions) error {
	if i.Endpoint == "" && cfg.Issuer == "" {
		return errors.New("set endpoint, or issuer so that it can be discovered")
	}
	if i.Endpoint != "" {
		if err := checkHTTPURL(i.Endpoint); err != nil {
			return fmt.Errorf("endpoint: %w", err)
		}
	}
	if i.TokenEndpoint != "" {
		if err := checkHTTPURL(i.TokenEndpoint); err != nil {
			return fmt.Errorf("token_endpoint: %w", err)
		}
	}
	if i.ClientID == "" {
		return errors.New("client_id is required (the gateway's own client at the authorization server)")
	}
	if i.Timeout < 0 || i.MaxConcurrent < 0 {
		return errors.New("timeout and max_concurrent must not be negative")
	}
	needSecret := func() error {
		if i.ClientSecret == "" {
			return fmt.Errorf("auth_method %s needs client_secret (did an {env.*} or {file.*} placeholder resolve to nothing?)", i.AuthMethod)
		}
		return nil
	}
	// No audience is required: without assertion_audience and issuer, an
	// assertion's aud is the URL of the endpoint it is sent to
	// (asclient.AssertionAudience), and without an issuer that endpoint is
	// configured, so there always is one.
	checkAssertion := func() error {
		if i.AssertionLifetime < 0 {
			return errors.New("assertion_lifetime must not be negative")
		}
		if i.AssertionLifetime > asclient.MaxAssertionLifetime {
			return fmt.Errorf("assertion_lifetime %s is longer than %s: servers refuse long-lived assertions (keep it to minutes)", i.AssertionLifetime, asclient.MaxAssertionLifetime)
		}
		return nil
	}
	switch i.AuthMethod {
	case "client_secret_basic", "client_secret_post", "":
		return needSecret()
	case "client_secret_jwt":
		if err := needSecret(); err != nil {
			return err
		}
		return checkAssertion()
	case "private_key_jwt":
		if i.PrivateKeyFile == "" {
			return errors.New("auth_method private_key_jwt needs private_key <file> [<kid>]")
		}
		return checkAssertion()
	case "bearer":
		if i.TokenEndpoint == "" && cfg.Issuer == "" {
			return errors.New("auth_method bearer needs token_endpoint (or issuer, to discover it)")
		}
		if i.PrivateKeyFile == "" && i.ClientSecret == "" {
			return errors.New("auth_method bearer needs client_secret or private_key, to get the gateway's own token")
		}
		if i.PrivateKeyFile != "" {
			return checkAssertion()
		}
		return nil
	}
	return fmt.Errorf("auth_method %q is not supported; use %s", i.AuthMethod, strings.Join(AuthMethods, ", "))
}

func (cfg Config) checkJWT(j *JWTOptions) error {
	if j.JWKSURL != "" && j.JWKSFile != "" {
		return errors.New("jwks_url and jwks_file are mutually exclusive")
	}
	if j.JWKSURL == "" && j.JWKSFile == "" && cfg.Issuer == "" {
		return errors.New("set jwks_url or jwks_file, or issuer so that jwks_uri can be discovered")
	}
	if j.JWKSURL != "" {
		if err := checkHTTPURL(j.JWKSURL); err != nil {
			return fmt.Errorf("jwks_url: %w", err)
		}
	}
	if cfg.Issuer == "" {
		return errors.New("issuer is required: a JWT's iss must be checked (RFC 9068 §4)")
	}
	if len(cfg.Audience) == 0 || slices.Contains(cfg.Audience, "") {
		return errors.New("audience is required: a JWT access token must be meant for this API (RFC 9068 §4)")
	}
	if j.RefreshInterval < 0 {
		return errors.New("refresh_interval must not be negative")
	}
	// The verifier's own rule, so that what passes here also builds.
	for _, a := range j.Algorithms {
		if err := jwt.CheckAlgorithm(jwa.SignatureAlgorithm(a)); err != nil {
			return fmt.Errorf("algorithms: %w", err)
		}
	}
	return nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// NeedsDiscovery reports whether New must fetch the issuer's metadata: an
// endpoint or the key set is to be discovered. The doctor asks the same
// function, so the two cannot disagree.
func (cfg Config) NeedsDiscovery() bool {
	if i := cfg.Introspect; i != nil && (i.Endpoint == "" || i.AuthMethod == "bearer" && i.TokenEndpoint == "") {
		return true
	}
	return cfg.JWT != nil && cfg.JWT.JWKSURL == "" && cfg.JWT.JWKSFile == ""
}

// RedisNamespace scopes the shared Redis tier to the settings that decide a
// token's validity. Without it, a gateway trusting issuer A would accept a
// decision that a gateway trusting issuer B wrote to the same Redis.
// Settings that do not change validity (timeouts, ttl, sizes, stale_grace:
// each entry carries its own freshness) are left out, so that a fleet whose
// members differ only in those still shares one namespace.
func (cfg Config) RedisNamespace() string {
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
		Leeway     time.Duration
	}{Issuer: cfg.Issuer, Audience: cfg.Audience, Leeway: cfg.Leeway}
	if i := cfg.Introspect; i != nil {
		id.Introspect = &introspectID{i.Endpoint, i.ClientID, i.IntrospectJWTs}
	}
	if j := cfg.JWT; j != nil {
		id.JWT = &jwtID{j.JWKSURL, j.JWKSFile, j.Algorithms, j.Types}
	}
	b, _ := json.Marshal(id)
	sum := sha256.Sum256(b)
	return cache.DefaultNamespace + ":" + hex.EncodeToString(sum[:8])
}
