package introspect

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/tokengate/tokengate/cache"
	"github.com/tokengate/tokengate/introspect/asclient"
	"github.com/tokengate/tokengate/introspect/claims"
	"github.com/tokengate/tokengate/introspect/jwt"
)

// TokenVerifier checks a token by itself (locally, or by asking a server).
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*Decision, error)
}

// Validator decides whether a token is good: cache first, then local JWT
// verification or introspection, coalescing concurrent first requests for
// the same token into one upstream call. Build it with New; it has no
// exported state, so nothing can change how it judges tokens after New.
type Validator struct {
	cfg Config
	log *zap.Logger
	// metadata is the issuer's discovered metadata (nil: not needed).
	metadata *asclient.Metadata

	cache *cache.Cache[*Verdict]
	keyer cache.Keyer
	// interned are the configured issuer and audiences, which decisions
	// made by introspection or read from Redis share.
	interned *claims.Interned
	// introspector handles opaque tokens (and JWTs from unknown issuers in
	// hybrid mode). Nil: introspection is not configured.
	introspector *asclient.Introspector
	// localJWT verifies JWT access tokens locally against keys. Nil: JWTs are
	// introspected.
	localJWT TokenVerifier
	keys     jwt.KeySet
	// jwtIssuer routes JWT-shaped tokens: in hybrid mode only tokens whose
	// (unverified) iss equals it are verified locally.
	jwtIssuer string
	// introspectJWTs also introspects JWTs that verified locally, so that
	// revoked JWTs are caught (one call per token per TTL).
	introspectJWTs bool
	// maxConcurrent caps upstream calls in flight (0: unlimited). Excess
	// callers wait at most queueWait, then get 503: a spray of random
	// tokens must not turn into an unbounded queue at the server.
	maxConcurrent int
	queueWait     time.Duration
	// breakerFailures consecutive failures to reach the authorization
	// server open the circuit: calls fail fast with 503 instead of piling
	// up on a dead server. breakerOpen is how long the circuit stays open
	// before one probe call is let through (1s: recovery is noticed
	// within a second).
	breakerFailures int
	breakerOpen     time.Duration
	now             func() time.Time

	sem     chan struct{}
	breaker *gobreaker.CircuitBreaker[*Decision]
	stale   singleflight.Group
	// serverDown records whether the last introspection call that failed
	// or succeeded found the server unreachable (no connection, timeout,
	// 5xx). An open circuit serves stale decisions only when it is true:
	// a circuit opened because the server refused the gateway's own
	// credentials is not an outage — the server is up and may know the
	// token is revoked.
	serverDown atomic.Bool

	closers []func()
	cancel  context.CancelFunc

	replayState // DPoP jti replay cache (binding.go)
}

// init prepares internal state once the parts are in place.
func (v *Validator) init() {
	if v.maxConcurrent > 0 {
		v.sem = make(chan struct{}, v.maxConcurrent)
	}
	if v.queueWait <= 0 {
		v.queueWait = 100 * time.Millisecond
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = zap.NewNop()
	}
	if v.breakerFailures <= 0 {
		v.breakerFailures = 5
	}
	if v.breakerOpen <= 0 {
		v.breakerOpen = time.Second
	}
	threshold := uint32(v.breakerFailures)
	v.breaker = gobreaker.NewCircuitBreaker[*Decision](gobreaker.Settings{
		Name:        "introspection",
		MaxRequests: 1,
		Timeout:     v.breakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
		// Only the server's own trouble counts: an inactive token, or a
		// 400 about the token it was asked about, is a healthy answer.
		IsSuccessful: func(err error) bool { return err == nil || AsError(err).Code != CodeUnavailable },
		// Our own back-pressure and callers giving up say nothing about
		// the server's health.
		IsExcluded: func(err error) bool {
			if err == nil {
				return false
			}
			r := AsError(err).Reason
			return r == "overloaded" || r == asclient.ReasonServerErrorOnToken || errors.Is(err, context.Canceled)
		},
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				v.log.Error("authorization server failing: introspection calls now fail fast with 503; one probe per second until it answers",
					zap.String("circuit", to.String()))
			} else {
				v.log.Info("introspection circuit state changed", zap.String("to", to.String()))
			}
		},
	})
}

// Close stops the validator's background work (JWKS refresh, the Redis
// subscription) and releases its connections.
func (v *Validator) Close() {
	if v.cancel != nil {
		v.cancel()
	}
	for _, c := range v.closers {
		c()
	}
	v.closers = nil
}

// Config returns the configuration the validator was built from, with
// defaults applied.
func (v *Validator) Config() Config { return v.cfg }

// Metadata returns the issuer's discovered metadata, or nil if New did not
// need discovery.
func (v *Validator) Metadata() *Metadata { return v.metadata }

// Introspector returns the introspection client, or nil.
func (v *Validator) Introspector() *Introspector { return v.introspector }

// KeySet returns the JWT key set, or nil.
func (v *Validator) KeySet() KeySet { return v.keys }

// Key returns the cache key of token: its fingerprint is what logs show.
func (v *Validator) Key(token string) cache.Key { return v.keyer.Key(token) }

// Evict removes token's cached decision here, in Redis and across the
// fleet, and reports whether this instance had one.
func (v *Validator) Evict(ctx context.Context, token string) (bool, error) {
	return v.cache.Delete(ctx, v.keyer.Key(token))
}

// EvictFingerprint removes every cached decision whose key has the logged
// fingerprint fp, and returns how many this instance found.
func (v *Validator) EvictFingerprint(ctx context.Context, fp string) (int, error) {
	return v.cache.DeleteFingerprint(ctx, fp)
}

// Flush removes every cached decision, and returns how many this instance
// removed.
func (v *Validator) Flush(ctx context.Context) (int, error) { return v.cache.Flush(ctx) }

// CachedDecisions is the approximate number of decisions in memory.
func (v *Validator) CachedDecisions() int { return v.cache.Len() }

// Validate returns the decision for token, or an *Error. The key is returned
// so callers can log the token's fingerprint (never the token).
func (v *Validator) Validate(ctx context.Context, token string) (*Decision, cache.Key, error) {
	return v.validateKey(ctx, token, v.keyer.Key(token))
}

// validateKey is Validate with token's key (v.Key) already computed.
func (v *Validator) validateKey(ctx context.Context, token string, key cache.Key) (*Decision, cache.Key, error) {
	// Peek checks memory only; on a miss, Load asks Redis and then the
	// server, once across concurrent callers. Get-then-Load would count
	// every miss twice and pay the Redis round trip twice.
	vd, ok := v.cache.Peek(key)
	if !ok {
		var err error
		if path := v.PathOf(token); path == PathJWT || path == PathNone {
			// A local verification (or refusal) costs less than a Redis
			// round trip or a hand-off to another goroutine, and needs
			// no I/O: nothing to share or to coalesce.
			vd, err = v.cache.LoadLocal(key, func() (*Verdict, time.Duration, error) {
				return v.decide(ctx, token, path)
			})
		} else {
			vd, _, err = v.cache.Load(ctx, key, func(ctx context.Context) (*Verdict, time.Duration, error) {
				return v.decide(ctx, token, path)
			})
		}
		if err != nil {
			return nil, key, err
		}
	}
	return v.fromCache(ctx, token, key, vd)
}

// fromCache turns the verdict cached under key into Validate's answer.
func (v *Validator) fromCache(ctx context.Context, token string, key cache.Key, vd *Verdict) (*Decision, cache.Key, error) {
	// An entry due for re-checking may come from the shared tier, written
	// by a gateway with stale_grace: every gateway re-checks it, and only
	// one with stale_grace of its own may fall back to it.
	if vd.FreshUntil != 0 && vd.Decision != nil && v.now().UnixNano() >= vd.FreshUntil {
		return v.revalidate(ctx, key, token, vd)
	}
	d, err := v.fromVerdict(vd)
	return d, key, err
}

func (v *Validator) fromVerdict(vd *Verdict) (*Decision, error) {
	if vd.Rejection != nil {
		return nil, vd.Rejection
	}
	// The cache TTL is bounded by exp, but a shared tier's clock or a
	// slow path could still hand us a stale entry: check again, cheaply.
	if d := vd.Decision; !d.ExpiresAt().IsZero() && d.UsableFor(v.now(), v.cfg.Leeway) <= 0 {
		return nil, d.CheckTimes(v.now(), v.cfg.Leeway)
	}
	return vd.Decision, nil
}

// decide runs on a cache miss, once per token across concurrent callers.
func (v *Validator) decide(ctx context.Context, token string, path Path) (*Verdict, time.Duration, error) {
	d, err := v.check(ctx, token, path)
	if err != nil {
		e := AsError(err)
		if e.Code == CodeInvalidToken {
			if e.Reason == "unknown_key" || e.Reason == "ambiguous_key" {
				// The key may be a new one the JWKS refresh gate has not
				// let us fetch yet: caching this would keep a good token
				// out for negative_ttl after its key arrives. Re-checking
				// costs no I/O (the gate bounds fetches).
				return &Verdict{Rejection: e}, 0, nil
			}
			return &Verdict{Rejection: e}, v.cfg.Cache.NegativeTTL, nil
		}
		// The gateway's own trouble is never cached: the next request
		// asks again.
		return nil, 0, e
	}
	now := v.now()
	left := d.UsableFor(now, v.cfg.Leeway)
	ttl := min(v.cfg.Cache.TTL, left)
	if ttl <= 0 {
		return &Verdict{Rejection: d.CheckTimes(now, v.cfg.Leeway)}, v.cfg.Cache.NegativeTTL, nil
	}
	if v.cfg.Cache.StaleGrace > 0 {
		// Keep the entry past its TTL for the grace period (still never
		// past exp), marked as due for re-checking.
		keep := min(ttl+v.cfg.Cache.StaleGrace, left)
		return &Verdict{Decision: d, FreshUntil: now.Add(ttl).UnixNano()}, keep, nil
	}
	return &Verdict{Decision: d}, ttl, nil
}

// revalidate re-checks a good decision whose TTL has passed. A gateway
// configured with stale_grace serves the stale decision only while the
// authorization server is unreachable, and only within its own grace
// period (the entry may have been written by a gateway with a longer one).
func (v *Validator) revalidate(ctx context.Context, key cache.Key, token string, stale *Verdict) (*Decision, cache.Key, error) {
	res, err, _ := v.stale.Do(string(key[:]), func() (any, error) {
		epoch := v.cache.Epoch()
		vd, ttl, err := v.decide(context.WithoutCancel(ctx), token, v.PathOf(token))
		if err != nil {
			return nil, err
		}
		v.cache.SetSince(ctx, key, vd, ttl, epoch)
		return vd, nil
	})
	if err != nil {
		if v.cfg.Cache.StaleGrace > 0 && v.now().Before(time.Unix(0, stale.FreshUntil).Add(v.cfg.Cache.StaleGrace)) && v.unreachable(err) {
			d, ferr := v.fromVerdict(&Verdict{Decision: stale.Decision})
			return d, key, ferr
		}
		return nil, key, err
	}
	d, err := v.fromVerdict(res.(*Verdict))
	return d, key, err
}

// unreachable reports whether err means the authorization server could not
// be reached at all — the one situation stale_grace is for. Refused gateway
// credentials, unusable answers and the gateway's own back-pressure are not:
// an attacker can cause the last one, and the server may well know that the
// token was revoked in the other two.
func (v *Validator) unreachable(err error) bool {
	switch AsError(err).Reason {
	case "timeout", "unreachable", "as_server_error":
		return true
	case "circuit_open":
		return v.serverDown.Load()
	}
	return false
}

// Path is how a token is checked.
type Path int

// The paths a token can take (Validator.PathOf).
const (
	// PathNone: nothing configured can check it (a non-JWT with only jwt).
	PathNone Path = iota
	// PathJWT: verified locally.
	PathJWT
	// PathJWTThenIntrospection: verified locally, then introspected
	// (IntrospectOptions.IntrospectJWTs).
	PathJWTThenIntrospection
	// PathIntrospection: introspected.
	PathIntrospection
)

// PathOf says how token would be checked. It is the one routing rule: the
// validator follows it and the doctor explains it.
func (v *Validator) PathOf(token string) Path {
	local := v.localJWT != nil && v.looksLikeJWT(token)
	if local && v.introspector != nil && v.jwtIssuer != "" && unverifiedIssuer(token) != v.jwtIssuer {
		// Hybrid mode: a JWT from an issuer we hold no keys for is the
		// introspection endpoint's to judge.
		local = false
	}
	switch {
	case local && v.introspectJWTs && v.introspector != nil:
		return PathJWTThenIntrospection
	case local:
		return PathJWT
	case v.introspector != nil:
		return PathIntrospection
	}
	return PathNone
}

func (v *Validator) check(ctx context.Context, token string, path Path) (*Decision, error) {
	switch path {
	case PathJWT:
		return v.localJWT.Verify(ctx, token)
	case PathJWTThenIntrospection:
		d, err := v.localJWT.Verify(ctx, token)
		if err != nil {
			return nil, err
		}
		if _, err := v.introspect(ctx, token); err != nil {
			return nil, err
		}
		return d, nil
	case PathIntrospection:
		return v.introspect(ctx, token)
	}
	if v.localJWT != nil {
		return nil, InvalidToken("malformed", "the token is not a JWT access token", nil)
	}
	return nil, Unavailable("not_configured", "configure introspect or jwt", nil)
}

func (v *Validator) introspect(ctx context.Context, token string) (*Decision, error) {
	d, err := v.breaker.Execute(func() (*Decision, error) {
		d, err := v.introspectNow(ctx, token)
		if e := AsError(err); e == nil || e.Reason != "overloaded" && !errors.Is(err, context.Canceled) {
			v.serverDown.Store(e != nil && v.unreachable(e))
		}
		return d, err
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return nil, &Error{Code: CodeUnavailable, Reason: "circuit_open",
			Description: "the authorization server could not be reached; try again later",
			Hint:        "the authorization server failed repeatedly (see the earlier error lines); the gateway lets one call through per second until it answers again",
			Err:         err}
	}
	return d, err
}

func (v *Validator) introspectNow(ctx context.Context, token string) (*Decision, error) {
	if v.sem != nil {
		select {
		case v.sem <- struct{}{}:
		default:
			t := time.NewTimer(v.queueWait)
			select {
			case v.sem <- struct{}{}:
				t.Stop()
			case <-t.C:
				return nil, &Error{Code: CodeUnavailable, Reason: "overloaded",
					Description: "too many tokens are being checked right now; try again later",
					Hint:        "introspect.max_concurrent was reached: a burst of new tokens (or a token spray); raise it if this is legitimate load"}
			case <-ctx.Done():
				t.Stop()
				return nil, Unavailable("timeout", "", ctx.Err())
			}
		}
		defer func() { <-v.sem }()
	}
	return v.introspector.Introspect(ctx, token)
}

// looksLikeJWT is jwt.LooksLike, answered without decoding anything for a
// token whose header the verifier has already accepted.
func (v *Validator) looksLikeJWT(token string) bool {
	if k, ok := v.localJWT.(interface{ KnownHeader(string) bool }); ok && k.KnownHeader(token) {
		return true
	}
	return jwt.LooksLike(token)
}

// unverifiedIssuer reads iss from a JWT payload without verifying it; used
// only to route the token, never to trust it. A payload the verifier could
// not read either has no issuer.
func unverifiedIssuer(token string) string {
	c, err := jwt.UnverifiedClaims(token)
	if err != nil {
		return ""
	}
	iss, _ := c["iss"].(string)
	return iss
}
