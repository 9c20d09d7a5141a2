package introspect

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/sync/singleflight"

	"github.com/tokengate/tokengate/cache"
)

// TokenVerifier checks a token by itself (locally, or by asking a server).
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*Decision, error)
}

// Validator decides whether a token is good: cache first, then local JWT
// verification or introspection, coalescing concurrent first requests for
// the same token into one upstream call.
type Validator struct {
	Cache *cache.Cache[*Verdict]
	Keyer cache.Keyer
	// Introspector handles opaque tokens (and JWTs from unknown issuers in
	// hybrid mode). Nil: introspection is not configured.
	Introspector *Introspector
	// JWT verifies JWT access tokens locally. Nil: JWTs are introspected.
	JWT TokenVerifier
	// JWTIssuer routes JWT-shaped tokens: in hybrid mode only tokens whose
	// (unverified) iss equals it are verified locally.
	JWTIssuer string
	// IntrospectJWTs also introspects JWTs that verified locally, so that
	// revoked JWTs are caught (one call per token per TTL).
	IntrospectJWTs bool
	// TTL bounds how long a good decision is reused (never past exp).
	TTL time.Duration
	// NegativeTTL is how long an invalid_token verdict is reused.
	NegativeTTL time.Duration
	// Leeway is the clock skew allowed on exp, nbf and iat. The token
	// paths apply it through checkTimes; the Validator applies the same
	// value when it bounds a cached decision's life by exp, so that a
	// token accepted on the way in is not then refused from the cache.
	// It must equal the JWT verifier's and the Introspector's leeway.
	Leeway time.Duration
	// MaxConcurrent caps upstream calls in flight (0: unlimited). Excess
	// callers wait at most QueueWait, then get 503: a spray of random
	// tokens must not turn into an unbounded queue at the server.
	MaxConcurrent int
	QueueWait     time.Duration
	// StaleGrace keeps good decisions this long past their TTL (never past
	// the token's exp) and serves them only while the authorization server
	// cannot be reached. 0 (the default) disables it: a revoked token is
	// then never accepted past TTL, at the price of rejecting every token
	// not cached when the server goes down.
	StaleGrace time.Duration
	// BreakerFailures consecutive failures to reach the authorization
	// server open the circuit: calls fail fast with 503 instead of piling
	// up on a dead server. Default 5.
	BreakerFailures int
	// BreakerOpen is how long the circuit stays open before one probe call
	// is let through. Default 1s, so recovery is noticed within a second.
	BreakerOpen time.Duration
	// OnBreakerChange, if set, is told of circuit state changes (for logs).
	OnBreakerChange func(from, to string)
	Now             func() time.Time

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
}

// Init prepares internal state; call it once before Validate.
func (v *Validator) Init() {
	if v.MaxConcurrent > 0 {
		v.sem = make(chan struct{}, v.MaxConcurrent)
	}
	if v.QueueWait <= 0 {
		v.QueueWait = 100 * time.Millisecond
	}
	if v.Now == nil {
		v.Now = time.Now
	}
	if v.BreakerFailures <= 0 {
		v.BreakerFailures = 5
	}
	if v.BreakerOpen <= 0 {
		v.BreakerOpen = time.Second
	}
	threshold := uint32(v.BreakerFailures)
	v.breaker = gobreaker.NewCircuitBreaker[*Decision](gobreaker.Settings{
		Name:        "introspection",
		MaxRequests: 1,
		Timeout:     v.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
		// Only the server's own trouble counts: an inactive token is a
		// perfectly healthy answer.
		IsSuccessful: func(err error) bool { return err == nil || AsError(err).Code != CodeUnavailable },
		// Our own back-pressure and callers giving up say nothing about
		// the server's health.
		IsExcluded: func(err error) bool {
			if err == nil {
				return false
			}
			return AsError(err).Reason == "overloaded" || errors.Is(err, context.Canceled)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if v.OnBreakerChange != nil {
				v.OnBreakerChange(from.String(), to.String())
			}
		},
	})
}

// Validate returns the decision for token, or an *Error. The key is returned
// so callers can log the token's fingerprint (never the token).
func (v *Validator) Validate(ctx context.Context, token string) (*Decision, cache.Key, error) {
	key := v.Keyer.Key(token)
	// Peek checks memory only; on a miss, Load asks Redis and then the
	// server, once across concurrent callers. Get-then-Load would count
	// every miss twice and pay the Redis round trip twice.
	vd, ok := v.Cache.Peek(key)
	if !ok {
		var err error
		vd, _, err = v.Cache.Load(ctx, key, func(ctx context.Context) (*Verdict, time.Duration, error) {
			return v.decide(ctx, token)
		})
		if err != nil {
			return nil, key, err
		}
	}
	// An entry due for re-checking may come from the shared tier, written
	// by a gateway with stale_grace: every gateway re-checks it, and only
	// one with stale_grace of its own may fall back to it.
	if !vd.FreshUntil.IsZero() && vd.Decision != nil && !v.Now().Before(vd.FreshUntil) {
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
	if d := vd.Decision; !d.ExpiresAt.IsZero() && usableFor(d, v.Now(), v.Leeway) <= 0 {
		return nil, checkTimes(d, v.Now(), v.Leeway)
	}
	return vd.Decision, nil
}

// decide runs on a cache miss, once per token across concurrent callers.
func (v *Validator) decide(ctx context.Context, token string) (*Verdict, time.Duration, error) {
	d, err := v.check(ctx, token)
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
			return &Verdict{Rejection: e}, v.NegativeTTL, nil
		}
		// The gateway's own trouble is never cached: the next request
		// asks again.
		return nil, 0, e
	}
	now := v.Now()
	left := usableFor(d, now, v.Leeway)
	ttl := min(v.TTL, left)
	if ttl <= 0 {
		return &Verdict{Rejection: checkTimes(d, now, v.Leeway)}, v.NegativeTTL, nil
	}
	if v.StaleGrace > 0 {
		// Keep the entry past its TTL for the grace period (still never
		// past exp), marked as due for re-checking.
		keep := min(ttl+v.StaleGrace, left)
		return &Verdict{Decision: d, FreshUntil: now.Add(ttl)}, keep, nil
	}
	return &Verdict{Decision: d}, ttl, nil
}

// revalidate re-checks a good decision whose TTL has passed. A gateway
// configured with stale_grace serves the stale decision only while the
// authorization server is unreachable, and only within its own grace
// period (the entry may have been written by a gateway with a longer one).
func (v *Validator) revalidate(ctx context.Context, key cache.Key, token string, stale *Verdict) (*Decision, cache.Key, error) {
	res, err, _ := v.stale.Do(string(key[:]), func() (any, error) {
		epoch := v.Cache.Epoch()
		vd, ttl, err := v.decide(context.WithoutCancel(ctx), token)
		if err != nil {
			return nil, err
		}
		v.Cache.SetSince(ctx, key, vd, ttl, epoch)
		return vd, nil
	})
	if err != nil {
		if v.StaleGrace > 0 && v.Now().Before(stale.FreshUntil.Add(v.StaleGrace)) && v.unreachable(err) {
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

func (v *Validator) check(ctx context.Context, token string) (*Decision, error) {
	local := v.JWT != nil && LooksLikeJWT(token)
	if local && v.Introspector != nil && v.JWTIssuer != "" && unverifiedIssuer(token) != v.JWTIssuer {
		// Hybrid mode: a JWT from an issuer we hold no keys for is the
		// introspection endpoint's to judge.
		local = false
	}
	if local {
		d, err := v.JWT.Verify(ctx, token)
		if err != nil || !v.IntrospectJWTs || v.Introspector == nil {
			return d, err
		}
		if _, err := v.introspect(ctx, token); err != nil {
			return nil, err
		}
		return d, nil
	}
	if v.Introspector == nil {
		if v.JWT != nil {
			return nil, InvalidToken("malformed", "the token is not a JWT access token", nil)
		}
		return nil, Unavailable("not_configured", "configure introspect or jwt", nil)
	}
	return v.introspect(ctx, token)
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
			t := time.NewTimer(v.QueueWait)
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
	return v.Introspector.Introspect(ctx, token)
}

// unverifiedIssuer reads iss from a JWT payload without verifying it; used
// only to route the token, never to trust it.
func unverifiedIssuer(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > DefaultMaxTokenLength {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	return c.Iss
}
