package introspect

import (
	"context"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"go.uber.org/zap"

	"github.com/tokengate/tokengate/cache"
	"github.com/tokengate/tokengate/introspect/asclient"
	"github.com/tokengate/tokengate/introspect/claims"
	"github.com/tokengate/tokengate/introspect/jwt"
)

// New builds a Validator from cfg: defaults, Check, discovery when needed
// (once), the key set (its first fetch bounded by ProvisionTimeout), the
// gateway's client authentication, the introspection client, the breaker
// and the decision cache. Close releases its background work.
func New(cfg Config) (*Validator, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	bg, cancel := context.WithCancel(context.Background())
	v := &Validator{cfg: cfg, log: log, cancel: cancel}
	ok := false
	defer func() {
		if !ok {
			v.Close()
		}
	}()
	pctx, pcancel := context.WithTimeout(bg, cfg.ProvisionTimeout)
	defer pcancel()

	if cfg.NeedsDiscovery() {
		md, err := asclient.Discover(pctx, asclient.NewHTTPClient(asclient.DefaultHTTPTimeout), cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("issuer: %w", err)
		}
		v.metadata = md
		log.Info("discovered authorization server metadata", zap.String("issuer", md.Issuer),
			zap.String("source", md.Source), zap.String("introspection_endpoint", md.IntrospectionEndpoint),
			zap.String("jwks_uri", md.JWKSURI))
	}

	var secret []byte
	if cfg.Cache.KeySecret != "" {
		secret = []byte(cfg.Cache.KeySecret)
	}
	v.keyer = cache.NewKeyer(secret)
	cc := cache.Config{MaxEntries: cfg.Cache.MaxEntries, Logger: log.Named("cache")}
	if cfg.Observer != nil {
		cc.Observer = cfg.Observer
	}
	if cfg.Cache.RedisURL != "" {
		ns := cfg.Cache.RedisNamespace
		if ns == "" {
			ns = cfg.RedisNamespace()
		}
		cc.Redis = &cache.RedisConfig{URL: cfg.Cache.RedisURL, Namespace: ns, Timeout: cfg.Cache.RedisTimeout,
			TombstoneTTL: tombstoneTTL(cfg)}
	}
	v.interned = claims.NewInterned(cfg.Issuer, cfg.Audience)
	c, err := cache.New[*Verdict](cc, verdictCodec{interned: v.interned})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	v.cache = c
	v.closers = append(v.closers, func() { _ = c.Close() })

	if i := cfg.Introspect; i != nil {
		if err := v.buildIntrospector(i); err != nil {
			return nil, fmt.Errorf("introspect: %w", err)
		}
	}
	if j := cfg.JWT; j != nil {
		if err := v.buildJWT(pctx, bg, j); err != nil {
			return nil, fmt.Errorf("jwt: %w", err)
		}
	}
	v.init()
	ok = true
	return v, nil
}

// tombstoneTTL outlives the longest load an eviction can race with: an
// introspection call, a retry after renewing the gateway's own token, the
// queue wait and a JWKS fetch.
func tombstoneTTL(cfg Config) time.Duration {
	d := cache.DefaultTombstoneTTL
	if i := cfg.Introspect; i != nil {
		d = max(d, 3*i.Timeout)
	}
	return d
}

func (v *Validator) buildIntrospector(i *IntrospectOptions) error {
	endpoint := i.Endpoint
	if endpoint == "" {
		if v.metadata == nil || v.metadata.IntrospectionEndpoint == "" {
			return fmt.Errorf("the metadata of %s has no introspection_endpoint; set introspect.endpoint", v.cfg.Issuer)
		}
		endpoint = v.metadata.IntrospectionEndpoint
	}
	auth, err := v.clientAuth(i)
	if err != nil {
		return err
	}
	var obs asclient.Observer
	if v.cfg.Observer != nil {
		obs = v.cfg.Observer
	}
	v.introspector = &asclient.Introspector{
		Endpoint:   endpoint,
		Auth:       auth,
		HTTPClient: asclient.NewHTTPClient(i.Timeout),
		Timeout:    i.Timeout,
		Issuer:     v.cfg.Issuer,
		Leeway:     v.cfg.Leeway,
		Observer:   obs,
		Interned:   v.interned,
	}
	v.maxConcurrent = i.MaxConcurrent
	v.introspectJWTs = i.IntrospectJWTs
	return nil
}

// clientAuth builds how the gateway authenticates to the authorization
// server. For bearer, the gateway's own token is fetched with
// private_key_jwt when a key is configured, else with client_secret_basic.
// The aud of each assertion is decided per call (asclient.AssertionAudience).
func (v *Validator) clientAuth(i *IntrospectOptions) (asclient.ClientAuthenticator, error) {
	aud, issuer := i.AssertionAudience, v.cfg.Issuer
	keyAuth := func() (asclient.ClientAuthenticator, error) {
		key, err := asclient.LoadPrivateKey(i.PrivateKeyFile, i.PrivateKeyID)
		if err != nil {
			return nil, fmt.Errorf("private_key: %w", err)
		}
		a := asclient.PrivateKeyJWT{ClientID: i.ClientID, Key: key, Audience: aud, Issuer: issuer, Lifetime: i.AssertionLifetime}
		if err := a.Validate(); err != nil {
			return nil, err
		}
		return a, nil
	}
	switch i.AuthMethod {
	case "client_secret_post":
		return asclient.SecretPost{ClientID: i.ClientID, ClientSecret: i.ClientSecret}, nil
	case "client_secret_jwt":
		a := asclient.ClientSecretJWT{ClientID: i.ClientID, Secret: i.ClientSecret, Audience: aud, Issuer: issuer, Lifetime: i.AssertionLifetime}
		if err := a.Validate(); err != nil {
			return nil, err
		}
		return a, nil
	case "private_key_jwt":
		return keyAuth()
	case "bearer":
		var inner asclient.ClientAuthenticator = asclient.SecretBasic{ClientID: i.ClientID, ClientSecret: i.ClientSecret}
		if i.PrivateKeyFile != "" {
			var err error
			if inner, err = keyAuth(); err != nil {
				return nil, err
			}
		}
		endpoint := i.TokenEndpoint
		if endpoint == "" {
			if v.metadata == nil || v.metadata.TokenEndpoint == "" {
				return nil, fmt.Errorf("the metadata of %s has no token_endpoint; set token_endpoint", v.cfg.Issuer)
			}
			endpoint = v.metadata.TokenEndpoint
		}
		var obs asclient.Observer
		if v.cfg.Observer != nil {
			obs = v.cfg.Observer
		}
		b := &asclient.BearerAuth{
			TokenEndpoint: endpoint,
			ClientAuth:    inner,
			Scopes:        i.TokenScope,
			HTTPClient:    asclient.NewHTTPClient(i.Timeout),
			Timeout:       i.Timeout,
			Observer:      obs,
		}
		if err := b.Validate(); err != nil {
			return nil, err
		}
		return b, nil
	}
	return asclient.SecretBasic{ClientID: i.ClientID, ClientSecret: i.ClientSecret}, nil
}

// buildJWT builds the key set (file, URL or discovered jwks_uri) and the
// verifier. Remote keys are fetched once now so that a wrong URL fails New,
// unless AllowStartWithoutKeys says the operator prefers to start and
// answer 503 until the keys arrive.
func (v *Validator) buildJWT(pctx, bg context.Context, j *JWTOptions) error {
	var keys jwt.KeySet
	if j.JWKSFile != "" {
		ks, err := jwt.LoadKeySetFile(j.JWKSFile)
		if err != nil {
			return fmt.Errorf("jwks_file: %w", err)
		}
		keys = ks
	} else {
		u := j.JWKSURL
		if u == "" {
			if v.metadata == nil || v.metadata.JWKSURI == "" {
				return fmt.Errorf("the metadata of %s has no jwks_uri; set jwt.jwks_url", v.cfg.Issuer)
			}
			u = v.metadata.JWKSURI
		}
		var obs jwt.JWKSObserver
		if v.cfg.Observer != nil {
			obs = v.cfg.Observer
		}
		rks, err := jwt.NewRemoteKeySet(bg, jwt.RemoteKeySetConfig{
			URL:                u,
			HTTPClient:         asclient.NewHTTPClient(asclient.DefaultHTTPTimeout),
			MinRefreshInterval: j.RefreshInterval,
			Logger:             v.log.Named("jwks"),
			Observer:           obs,
			// A key removed at the AS is retired or compromised: drop
			// every cached decision (here, in Redis and across the fleet)
			// rather than keep accepting its tokens until ttl.
			OnKeysRemoved: func([]string) {
				ctx, cancel := context.WithTimeout(bg, 5*time.Second)
				defer cancel()
				if _, err := v.cache.Flush(ctx); err != nil {
					v.log.Warn("flushing cached decisions after a key removal", zap.Error(err))
				}
			},
		})
		if err != nil {
			return fmt.Errorf("jwks_url: %w", err)
		}
		v.closers = append(v.closers, rks.Close)
		if err := rks.Refresh(pctx); err != nil {
			if !j.AllowStartWithoutKeys {
				return fmt.Errorf("fetching the JWKS from %s: %w (set allow_start_without_keys to start anyway and answer 503 until it is reachable)", u, err)
			}
			v.log.Error("JWKS not reachable at startup; requests with JWTs get 503 until it is",
				zap.String("jwks_url", u), zap.Error(err))
		}
		keys = rks
	}
	algs := make([]jwa.SignatureAlgorithm, 0, len(j.Algorithms))
	for _, a := range j.Algorithms {
		algs = append(algs, jwa.SignatureAlgorithm(a))
	}
	verifier, err := jwt.NewVerifier(keys, jwt.Config{
		Issuer:        v.cfg.Issuer,
		Audience:      v.cfg.Audience,
		Algorithms:    algs,
		Types:         jwt.AcceptedTypes(j.Types),
		Leeway:        v.cfg.Leeway,
		MaxTokenBytes: v.cfg.MaxTokenLength,
	})
	if err != nil {
		return err
	}
	v.keys = keys
	v.localJWT = verifier
	v.jwtIssuer = v.cfg.Issuer
	return nil
}
