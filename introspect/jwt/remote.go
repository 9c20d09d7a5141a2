package jwt

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// Defaults and bounds of RemoteKeySet.
const (
	defaultFetchTimeout = 10 * time.Second
	defaultMaxJWKSBytes = 1 << 20
	defaultMinRefresh   = 10 * time.Second
	defaultRefresh      = 5 * time.Minute
	maxAgeFloor         = time.Minute
	maxAgeCeiling       = 24 * time.Hour
	fetchFlightKey      = "jwks"
	maxErrorBodyDrain   = 4 << 10
	jwksAccept          = "application/jwk-set+json, application/json;q=0.9"
)

// RemoteKeySetConfig configures a RemoteKeySet.
type RemoteKeySetConfig struct {
	// URL is the JWKS endpoint (the AS metadata's jwks_uri). Required.
	URL string
	// HTTPClient fetches the JWKS. Default: a client with a 10s Timeout.
	// Never http.DefaultClient, which has no timeout.
	HTTPClient *http.Client
	// MaxBytes bounds the JWKS response body; a larger body fails the
	// refresh. Default: 1 MiB.
	MaxBytes int64
	// MinRefreshInterval is how often, at most, a token with an unknown kid
	// may make the set refetch. All such tokens arriving while a fetch is
	// under way wait for that one fetch. Default: 10s.
	MinRefreshInterval time.Duration
	// DefaultRefresh is the background refresh interval when the JWKS
	// response has no Cache-Control max-age. A max-age (less the Age
	// header) is honoured but clamped to [1m, 24h], so an AS can neither
	// make the gateway poll it every second nor pin a key for a week;
	// no-cache/no-store count as the 1m floor. After a failed fetch the
	// next attempt comes after MinRefreshInterval, doubling per consecutive
	// failure up to DefaultRefresh. Default: 5m.
	DefaultRefresh time.Duration
	// Logger receives refresh failures (warn) and skipped keys (debug).
	// Response bodies are never logged. Default: zap.NewNop().
	Logger *zap.Logger
	// Observer is told about every fetch, for metrics. May be nil.
	Observer JWKSObserver
	// Now is the clock; tests inject one. Default: time.Now.
	Now func() time.Time
	// OnKeysRemoved, if set, is called after a refresh dropped keys (by
	// kid), so that decisions cached for tokens they signed can be dropped.
	OnKeysRemoved func(kids []string)
}

// RemoteKeySet is a KeySet served from a JWKS URL. It keeps the last good
// set when a fetch fails, replaces the whole set when a fetch succeeds,
// refreshes in the background, and refetches (rate-limited, coalesced) when
// a token names a kid it does not know, so a key rotation at the AS is
// picked up within MinRefreshInterval.
//
// It is written on top of jwk.ParseKey rather than jwx's jwk.Cache, which
// refreshes only as Cache-Control/Expires say and whose Refresh fetches
// every time it is called: an unknown kid must trigger a refresh, and a
// flood of random kids must not trigger more than one per interval.
type RemoteKeySet struct {
	url        string
	logURL     string
	client     *http.Client
	maxBytes   int64
	minRefresh time.Duration
	defRefresh time.Duration
	log        *zap.Logger
	obs        JWKSObserver
	now        func() time.Time
	onRemoved  func(kids []string)

	ctx       context.Context // lifetime: fetches run under it, not a caller's
	cancel    context.CancelFunc
	loopDone  chan struct{}
	kick      chan struct{}
	closeOnce sync.Once

	snap atomic.Pointer[snapshot]
	sf   singleflight.Group

	mu        sync.Mutex
	lastFetch time.Time // start of the last fetch, for the unknown-kid gate
	lastErr   error     // result of the last completed fetch
	next      time.Time // next background refresh; zero until the first fetch
	failures  int       // consecutive failed fetches
}

// NewRemoteKeySet builds a RemoteKeySet. It does not fetch: call Refresh to
// load keys up front (fail fast at provisioning, or log a warning and let
// requests get 503 until the AS is back), or let the first token do it.
// The background refresh goroutine lives until ctx is cancelled or Close is
// called; it stays idle until the first fetch.
func NewRemoteKeySet(ctx context.Context, cfg RemoteKeySetConfig) (*RemoteKeySet, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("introspect: jwks url %q must be an absolute http(s) URL", cfg.URL)
	}
	if cfg.MaxBytes < 0 || cfg.MinRefreshInterval < 0 || cfg.DefaultRefresh < 0 {
		return nil, errors.New("introspect: jwks MaxBytes, MinRefreshInterval and DefaultRefresh must not be negative")
	}
	s := &RemoteKeySet{
		url:        cfg.URL,
		logURL:     u.Redacted(),
		client:     cfg.HTTPClient,
		maxBytes:   cfg.MaxBytes,
		minRefresh: cfg.MinRefreshInterval,
		defRefresh: cfg.DefaultRefresh,
		log:        cfg.Logger,
		obs:        cfg.Observer,
		now:        cfg.Now,
		onRemoved:  cfg.OnKeysRemoved,
		loopDone:   make(chan struct{}),
		kick:       make(chan struct{}, 1),
	}
	if s.client == nil {
		s.client = &http.Client{Timeout: defaultFetchTimeout}
	}
	if s.maxBytes == 0 {
		s.maxBytes = defaultMaxJWKSBytes
	}
	if s.minRefresh == 0 {
		s.minRefresh = defaultMinRefresh
	}
	if s.defRefresh == 0 {
		s.defRefresh = defaultRefresh
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if ctx == nil {
		ctx = context.Background()
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	go s.loop()
	return s, nil
}

// Close stops the background refresh. Keys already loaded stay usable, but
// unknown kids no longer trigger fetches. Safe to call more than once.
func (s *RemoteKeySet) Close() {
	s.closeOnce.Do(s.cancel)
	<-s.loopDone
}

// URL is the JWKS URL the set fetches.
func (s *RemoteKeySet) URL() string { return s.url }

// LastError is the error of the last fetch: why the set holds no keys (or
// old ones). It is nil before the first fetch and after one that worked.
func (s *RemoteKeySet) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Len is the number of usable keys in the current set.
func (s *RemoteKeySet) Len() int { return s.snap.Load().len() }

// Algorithms implements KeySet.
func (s *RemoteKeySet) Algorithms() []jwa.SignatureAlgorithm { return s.snap.Load().algorithms() }

// Refresh fetches the JWKS now (joining a fetch already under way) and
// returns its error. On error the previous keys, if any, stay in use.
// Waiting stops when ctx is done; the fetch itself runs under the set's own
// context and the HTTP client's timeout, so one impatient caller cannot
// fail it for the others.
func (s *RemoteKeySet) Refresh(ctx context.Context) error {
	return s.do(ctx, false)
}

// Key implements KeySet.
func (s *RemoteKeySet) Key(ctx context.Context, kid string, alg jwa.SignatureAlgorithm) (jwk.Key, error) {
	vk, err := s.verifyKey(ctx, kid, alg)
	if err != nil {
		return nil, err
	}
	return vk.jwk, nil
}

// verifyKey is Key with the key's standard-library form, for the verifier.
func (s *RemoteKeySet) verifyKey(ctx context.Context, kid string, alg jwa.SignatureAlgorithm) (*verifyKey, error) {
	k, err := s.snap.Load().lookup(kid, alg)
	if err == nil || errors.Is(err, ErrAmbiguousKey) {
		// Ambiguity (no kid, or a kid the AS used twice) is not cured by
		// a refresh.
		return k, err
	}
	// Unknown kid: the AS may have rotated. Refetch, at most once per
	// MinRefreshInterval; a flood of random kids costs one fetch.
	if rerr := s.do(ctx, true); rerr != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("introspect: waiting for jwks %s: %w", s.logURL, ctx.Err())
	}
	snap := s.snap.Load()
	if snap.len() == 0 {
		// No keys at all: this is the gateway's trouble, not the token's.
		s.mu.Lock()
		lastErr := s.lastErr
		s.mu.Unlock()
		if lastErr == nil {
			lastErr = errors.New("no keys loaded yet")
		}
		return nil, fmt.Errorf("introspect: jwks %s has no usable keys: %w", s.logURL, lastErr)
	}
	return snap.lookup(kid, alg)
}

// do runs one fetch through the singleflight group and waits for it. With
// gated set, the fetch is skipped when one started less than
// MinRefreshInterval ago; the check runs inside the flight, so a caller
// arriving just after a fetch finished cannot start a second one.
func (s *RemoteKeySet) do(ctx context.Context, gated bool) error {
	ch := s.sf.DoChan(fetchFlightKey, func() (any, error) {
		s.mu.Lock()
		if gated && !s.lastFetch.IsZero() && s.now().Sub(s.lastFetch) < s.minRefresh {
			err := s.lastErr
			s.mu.Unlock()
			return nil, err
		}
		s.lastFetch = s.now()
		s.mu.Unlock()
		return nil, s.fetchAndSwap()
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// removedKids lists the kids of old that next no longer has. A key removed at
// the authorization server is usually a retired or compromised one: tokens it
// signed must stop being accepted now, not when their cached decisions expire.
func removedKids(old, next *snapshot) []string {
	if old == nil {
		return nil
	}
	var removed []string
	for kid := range old.byKid {
		if _, ok := next.byKid[kid]; !ok && kid != "" {
			removed = append(removed, kid)
		}
	}
	return removed
}

// fetchAndSwap fetches, installs the new snapshot on success, schedules the
// next background refresh, logs and counts.
func (s *RemoteKeySet) fetchAndSwap() error {
	snap, skipped, interval, err := s.fetchSafe()
	if err == nil && snap.len() == 0 {
		// An empty set would lock every caller out; far more likely a
		// misconfigured or half-deployed AS than a deliberate revocation of
		// all keys, so keep the last good set and say so.
		err = fmt.Errorf("jwks has no usable signature verification key%s", skippedSummary(skipped))
	}
	s.mu.Lock()
	s.lastErr = err
	if err == nil {
		s.failures = 0
	} else {
		s.failures++
		interval = s.backoff(s.failures)
	}
	s.next = s.now().Add(interval)
	failures := s.failures
	keysBefore := s.snap.Load().len()
	s.mu.Unlock()

	if err == nil {
		old := s.snap.Swap(snap)
		if removed := removedKids(old, snap); len(removed) > 0 && s.onRemoved != nil {
			s.log.Info("signing keys removed from the JWKS; decisions cached for their tokens are dropped",
				zap.String("jwks_url", s.logURL), zap.Strings("kids", removed))
			s.onRemoved(removed)
		}
		for _, sk := range skipped {
			s.log.Debug("jwks key skipped", zap.String("jwks_url", s.logURL), zap.Int("index", sk.Index), zap.String("kid", sk.Kid), zap.String("reason", sk.Reason))
		}
		s.log.Debug("jwks refreshed", zap.String("jwks_url", s.logURL), zap.Int("keys", snap.len()), zap.Duration("next_refresh_in", interval))
	} else if s.ctx.Err() == nil {
		s.log.Warn("jwks refresh failed; keeping the last good key set",
			zap.String("jwks_url", s.logURL),
			zap.Int("keys_kept", keysBefore),
			zap.Int("consecutive_failures", failures),
			zap.Duration("retry_in", interval),
			zap.Error(err),
			zap.String("hint", "check that the jwks_url is reachable from the gateway and serves a JWK Set as application/json with status 200"))
	}
	if s.obs != nil {
		s.obs.JWKSRefresh(err == nil)
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return err
}

// backoff is the delay before the next attempt after n consecutive
// failures: MinRefreshInterval doubling, capped at the normal interval.
func (s *RemoteKeySet) backoff(n int) time.Duration {
	ceiling := max(s.defRefresh, s.minRefresh)
	d := s.minRefresh
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

// fetchSafe is fetch with a panic (jwx parsing foreign input) turned into a
// failed fetch: singleflight re-panics on a fresh goroutine, where nothing
// could recover it, so it must not get that far.
func (s *RemoteKeySet) fetchSafe() (snap *snapshot, skipped []skippedKey, interval time.Duration, err error) {
	defer func() {
		if r := recover(); r != nil {
			snap, skipped, interval, err = nil, nil, 0, fmt.Errorf("panic while fetching jwks: %v", r)
		}
	}()
	return s.fetch()
}

// loop refreshes in the background at the time the last fetch scheduled.
// It is idle until the first fetch and exits when the set's context ends.
func (s *RemoteKeySet) loop() {
	defer close(s.loopDone)
	for {
		s.mu.Lock()
		next := s.next
		s.mu.Unlock()
		var timer *time.Timer
		var fire <-chan time.Time
		if !next.IsZero() {
			timer = time.NewTimer(max(next.Sub(s.now()), 0))
			fire = timer.C
		}
		select {
		case <-s.ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-s.kick:
			// A fetch happened (ours or a caller's): reschedule.
			if timer != nil {
				timer.Stop()
			}
		case <-fire:
			_ = s.do(s.ctx, false)
		}
	}
}
