package asclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokengate/tokengate/introspect/claims"
)

// Defaults for BearerAuth.
const (
	// DefaultAssumedTokenLifetime is used when a token response has no
	// expires_in (RFC 6749 §5.1 only RECOMMENDS it): short enough that a
	// token we guessed wrong about is replaced soon.
	DefaultAssumedTokenLifetime = 60 * time.Second
	// DefaultRenewInterval coalesces Renew calls: when many in-flight
	// introspections learn at once that our token is dead, one new token is
	// fetched, not one per request.
	DefaultRenewInterval = 2 * time.Second
	// DefaultTokenFailureBackoff is how long a refusal of the token endpoint
	// (4xx: wrong secret, unknown scope, ...) is answered from memory: a
	// misconfigured gateway must not hammer the AS once per user request.
	DefaultTokenFailureBackoff = time.Second

	// maxRefreshMargin and refreshFraction: a token is replaced when
	// min(10% of its lifetime, 30 s) is left, so it never expires in flight.
	maxRefreshMargin = 30 * time.Second
	refreshFraction  = 10
	// minTokenCache applies to tokens that are born expired or whose
	// expires_in is absurd: they are still tried (the AS may accept them)
	// but never cached so briefly that every request costs a token call.
	minTokenCache = time.Second
	// maxSaneExpiresIn: beyond ten years an expires_in is garbage. zitadel
	// (github.com/zitadel/oidc) encodes a negative expires_in — a token
	// born expired — as uint64, e.g. 18446744073709551316 for -300.
	maxSaneExpiresIn = 10 * 365 * 24 * time.Hour
	// maxTokenCache: even a year-long token is re-fetched daily.
	maxTokenCache = 24 * time.Hour
	// maxAccessTokenBytes bounds the token we put into our own header.
	maxAccessTokenBytes = 16 << 10
)

// BearerAuth is auth_method bearer: the gateway authenticates to the
// introspection endpoint with its own access token (Oath's authorization
// server requires this: "make sure you are passing Authorization Bearer
// header" with a token that "has introspect scope"), obtained by the
// client_credentials grant (RFC 6749 §4.4) from TokenEndpoint. The token is
// cached until shortly before it expires and refreshed by one request
// however many callers need it.
//
// Use a *BearerAuth; do not copy it after first use.
type BearerAuth struct {
	TokenEndpoint string
	// ClientAuth authenticates the client_credentials request (any method
	// but BearerAuth itself).
	ClientAuth ClientAuthenticator
	// Scopes are requested as the scope parameter (e.g. "introspect").
	Scopes []string
	// HTTPClient defaults to NewHTTPClient(Timeout) (no redirects).
	HTTPClient *http.Client
	// Timeout bounds one token request. Default DefaultHTTPTimeout.
	Timeout time.Duration
	// MaxResponseBytes bounds the token response. Default
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64
	Now              func() time.Time
	// Observer receives UpstreamCall("token", ...) for every token request.
	Observer Observer
	// AssumedLifetime applies when expires_in is missing. Default
	// DefaultAssumedTokenLifetime.
	AssumedLifetime time.Duration
	// RenewInterval: Renew calls closer together than this are coalesced.
	// Default DefaultRenewInterval.
	RenewInterval time.Duration
	// FailureBackoff: how long a 4xx from the token endpoint is returned
	// without asking again. Default DefaultTokenFailureBackoff; negative
	// disables.
	FailureBackoff time.Duration

	mu        sync.Mutex
	cur       *bearerToken
	lastRenew time.Time
	failErr   error
	failUntil time.Time
	client    *http.Client
	sf        singleflight.Group
}

type bearerToken struct {
	value     string
	refreshAt time.Time // replace it from then on
	expiresAt time.Time // the AS's own expiry: still usable until then if a refresh fails
}

// Method implements ClientAuthenticator. There is no RFC 8414 name for it;
// this is the Caddyfile's auth_method value.
func (*BearerAuth) Method() string { return "bearer" }

// Validate reports a configuration that could never get a token.
func (b *BearerAuth) Validate() error {
	u, err := url.Parse(b.TokenEndpoint)
	if b.TokenEndpoint == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("auth_method bearer: token_endpoint %q is not an absolute http(s) URL", b.TokenEndpoint)
	}
	if u.Fragment != "" {
		return fmt.Errorf("auth_method bearer: token_endpoint %q has a fragment (RFC 6749 §3.2)", b.TokenEndpoint)
	}
	switch b.ClientAuth.(type) {
	case nil:
		// RFC 6749 §4.4: the client_credentials grant is for confidential
		// clients only.
		return errors.New("auth_method bearer: the token request needs client authentication (client_secret or private_key)")
	case *BearerAuth:
		return errors.New("auth_method bearer: the token request cannot itself be authenticated with a bearer token")
	}
	if v, ok := b.ClientAuth.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("auth_method bearer: %w", err)
		}
	}
	for _, s := range b.Scopes {
		if !isScopeToken(s) {
			return fmt.Errorf("auth_method bearer: token_scope %q is not a valid scope token (RFC 6749 §3.3)", s)
		}
	}
	return nil
}

// isScopeToken: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ) (RFC 6749 §3.3).
func isScopeToken(s string) bool { return claims.IsScopeToken(s) }

// Authenticate implements ClientAuthenticator: it sets the gateway's own
// access token as "Authorization: Bearer" (RFC 6750 §2.1), never in the body.
func (b *BearerAuth) Authenticate(ctx context.Context, _ string, _ url.Values, h http.Header) error {
	tok, err := b.Token(ctx)
	if err != nil {
		return err
	}
	h.Set("Authorization", "Bearer "+tok)
	return nil
}

// Renew implements Renewable: the server refused our token (revoked, or
// expired early), so the next Authenticate fetches a new one. Calls within
// RenewInterval of the last honoured one are ignored: they come from requests
// that used the same dead token, and the token fetched for the first of them
// serves them all.
func (b *BearerAuth) Renew() {
	now := b.now()
	interval := b.RenewInterval
	if interval <= 0 {
		interval = DefaultRenewInterval
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.lastRenew.IsZero() {
		if d := now.Sub(b.lastRenew); d >= 0 && d < interval {
			return
		}
	}
	b.lastRenew = now
	b.cur = nil
}

// Token returns the gateway's current access token, fetching one if there is
// none or it is about to expire. Concurrent callers share one token request.
// An error is a temporarily_unavailable *claims.Error; when the token endpoint
// refused us it wraps an *ASError whose Hint says what to fix.
func (b *BearerAuth) Token(ctx context.Context) (string, error) {
	if tok, err, ok := b.cached(b.now()); ok {
		return tok, err
	}
	// The fetch runs detached from this caller's cancellation (others wait
	// for it too) but bounded by Timeout; each caller still honours its own
	// context while waiting.
	detached := context.WithoutCancel(ctx)
	ch := b.sf.DoChan("token", func() (any, error) { return b.refresh(detached) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", claims.Unavailable("timeout", tokenHints.timeout, fmt.Errorf("waiting for a token from %s: %w", b.TokenEndpoint, ctx.Err()))
	}
}

// cached answers from memory when it can: a fresh token, a recent refusal
// (while the last token, if any, is still alive it is used instead).
func (b *BearerAuth) cached(now time.Time) (string, error, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.cur; c != nil && now.Before(c.refreshAt) {
		return c.value, nil, true
	}
	if b.failErr != nil && now.Before(b.failUntil) {
		if c := b.cur; c != nil && now.Before(c.expiresAt) {
			return c.value, nil, true
		}
		return "", b.failErr, true
	}
	return "", nil, false
}

func (b *BearerAuth) refresh(ctx context.Context) (string, error) {
	now := b.now()
	// A caller may have missed a refresh that finished just before it
	// joined: answer from memory rather than ask again.
	if tok, err, ok := b.cached(now); ok {
		return tok, err
	}
	tok, lifetime, err := b.fetch(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		var ase *ASError
		if errors.As(err, &ase) && ase.Status < 500 && b.FailureBackoff >= 0 {
			backoff := b.FailureBackoff
			if backoff == 0 {
				backoff = DefaultTokenFailureBackoff
			}
			b.failErr, b.failUntil = err, now.Add(backoff)
		}
		// A proactive refresh failed but the old token is still alive (and
		// was not renewed away): keep using it rather than fail requests.
		if c := b.cur; c != nil && now.Before(c.expiresAt) {
			return c.value, nil
		}
		return "", err
	}
	b.failErr = nil
	b.cur = &bearerToken{value: tok, refreshAt: now.Add(cacheFor(lifetime)), expiresAt: now.Add(lifetime)}
	return tok, nil
}

// cacheFor is how long a token with this lifetime is used before it is
// replaced: lifetime − min(10%, 30 s), between minTokenCache and
// maxTokenCache.
func cacheFor(lifetime time.Duration) time.Duration {
	margin := min(lifetime/refreshFraction, maxRefreshMargin)
	return min(max(lifetime-margin, minTokenCache), maxTokenCache)
}

// fetch performs one client_credentials request and returns the token and
// its lifetime (possibly ≤ 0: born expired).
func (b *BearerAuth) fetch(ctx context.Context) (string, time.Duration, error) {
	if b.ClientAuth == nil {
		return "", 0, claims.Unavailable("client_auth", "auth_method bearer needs client credentials for the token request", errors.New("no client authentication configured"))
	}
	if _, self := b.ClientAuth.(*BearerAuth); self {
		return "", 0, claims.Unavailable("client_auth", "auth_method bearer cannot authenticate its own token request with a bearer token", errors.New("recursive bearer authentication"))
	}
	// An assertion in this request is meant for the token endpoint, not for
	// the introspection endpoint the gateway's token is then used at: the
	// call authenticates to TokenEndpoint.
	call := formPost{endpoint: b.TokenEndpoint, kind: "token", hints: &tokenHints, auth: b.ClientAuth,
		client: b.httpClient(callTimeout(b.Timeout)), timeout: b.Timeout, maxBytes: b.MaxResponseBytes, observer: b.Observer}
	// RFC 6749 §4.4.2: grant_type and scope, form-encoded; lower-case names.
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(b.Scopes) > 0 {
		form.Set("scope", strings.Join(b.Scopes, " "))
	}
	r, refusal, err := call.send(ctx, form)
	switch {
	case err != nil:
		return "", 0, err
	case refusal != nil:
		return "", 0, claims.Unavailable("token_rejected", refusal.Hint(), refusal)
	}
	tok, lifetime, perr := b.parseTokenResponse(r.body)
	if perr != nil {
		r.done("bad_response")
		return "", 0, claims.Unavailable("bad_response", "the token endpoint's answer is not a usable RFC 6749 §5.1 token response: check introspect.token_endpoint",
			fmt.Errorf("%s (%s): %w", b.TokenEndpoint, r.describe(), perr))
	}
	r.done("")
	return tok, lifetime, nil
}

// tokenHints word the operator hints of a token request.
var tokenHints = callHints{
	clientAuth:  "the gateway could not build its client credentials for the token request: check client_secret / private_key",
	badEndpoint: "introspect.token_endpoint is not a usable URL",
	timeout:     "the token endpoint did not answer in time: check it is up and reachable, or raise introspect.timeout",
	unreachable: "could not connect to the token endpoint %s: check the URL, DNS, and that the server is up",
	badResponse: "the token endpoint's answer is not an RFC 6749 token response: check introspect.token_endpoint",
}

func (b *BearerAuth) parseTokenResponse(body []byte) (string, time.Duration, error) {
	m, err := claims.ParseStrictObject(body)
	if err != nil {
		return "", 0, err
	}
	tok, _ := m["access_token"].(string)
	if tok == "" {
		return "", 0, errors.New("no access_token")
	}
	// The token goes into our Authorization header: it must be a b64token
	// (RFC 6750 §2.1), which also rules out header injection.
	if _, terr := claims.CheckB64Token(tok, maxAccessTokenBytes); terr != nil {
		return "", 0, fmt.Errorf("the access_token is unusable: %s", terr.Description)
	}
	// RFC 6749 §7.1: we can only present a Bearer token. token_type is
	// case-insensitive; a server that omits it is tolerated.
	switch tt, _ := m["token_type"].(string); {
	case tt == "", strings.EqualFold(tt, "Bearer"):
	default:
		return "", 0, fmt.Errorf("token_type is %q, not Bearer", sanitizeLog(tt))
	}
	assumed := b.AssumedLifetime
	if assumed <= 0 {
		assumed = DefaultAssumedTokenLifetime
	}
	return tok, expiresIn(m["expires_in"], assumed), nil
}

// expiresIn reads expires_in leniently: a number (integer or not) or a
// numeric string; missing or unreadable means assumed. Zero, negative and
// absurd values (including zitadel's uint64-encoded negatives) mean the
// token is already expired: the result is ≤ 0.
func expiresIn(v any, assumed time.Duration) time.Duration {
	var s string
	switch x := v.(type) {
	case nil:
		return assumed
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return assumed
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) {
		return assumed
	}
	if f <= 0 || f > maxSaneExpiresIn.Seconds() {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

func (b *BearerAuth) httpClient(timeout time.Duration) *http.Client {
	if b.HTTPClient != nil {
		return b.HTTPClient
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client == nil {
		b.client = NewHTTPClient(timeout)
	}
	return b.client
}

func (b *BearerAuth) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}
