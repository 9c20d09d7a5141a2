package caddymodule

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are process-wide, like Caddy's own HTTP metrics: each config load
// has a fresh registry, and the same collectors are registered into it, so
// counters survive reloads instead of resetting.
//
// Every series carries the issuer label: the configured issuer identifier of
// the validator concerned (a route that trusts several issuers reports each
// apart, e.g. to watch traffic move from one IdP to another), or "" for
// decisions taken before any issuer was asked (no token, a malformed
// request, a JWT of an issuer the route does not trust). Its values come
// from configs only, never from a token, so the label stays bounded.
type metrics struct {
	decisions     *prometheus.CounterVec
	cacheRequests *prometheus.CounterVec
	upstreamDur   *prometheus.HistogramVec
	upstreamErrs  *prometheus.CounterVec
	jwksRefreshes *prometheus.CounterVec
	redisErrors   *prometheus.CounterVec
	coalesced     *prometheus.CounterVec

	mu      sync.Mutex
	issuers map[string]*issuerMetrics
	// none counts what no issuer decided, and is what *metrics itself
	// observes as (see the methods below).
	none *issuerMetrics
}

// issuerMetrics are one issuer's series with their children resolved once:
// With/WithLabelValues costs a map lookup and a hash per request, which the
// warm path should not pay. It is the introspect.Observer of that issuer's
// validator.
type issuerMetrics struct {
	m *metrics
	// issuer is the label value.
	issuer    string
	byOutcome map[string]prometheus.Counter
	// allowed is byOutcome["allowed"], the one counted on every good request.
	allowed prometheus.Counter
	// The cache hit/miss counters of the two known tiers.
	memHit, memMiss, redisHit, redisMiss prometheus.Counter
	coalesced                            prometheus.Counter
	jwksOK, jwksError                    prometheus.Counter
}

const metricsNamespace, metricsSubsystem = "caddy", "bearer_auth"

var (
	globalMetricsOnce sync.Once
	globalMetrics     *metrics
)

// outcomes are every value of the outcome label (bounded by construction).
var outcomes = []string{"allowed", "no_credentials", "invalid_request", "invalid_token",
	"insufficient_scope", "unauthorized_client", "insufficient_user_authentication", "unavailable"}

func getMetrics() *metrics {
	globalMetricsOnce.Do(func() {
		m := &metrics{
			decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "decisions_total", Help: "Requests decided by bearer_auth, by issuer and outcome."}, []string{"issuer", "outcome"}),
			cacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "cache_requests_total", Help: "Decision cache lookups by issuer, tier (memory, redis) and result (hit, miss)."}, []string{"issuer", "tier", "result"}),
			upstreamDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "upstream_request_duration_seconds", Help: "Latency of calls to the authorization server, by issuer and endpoint.",
				Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"issuer", "endpoint"}),
			upstreamErrs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "upstream_errors_total", Help: "Failed calls to the authorization server, by issuer, endpoint and OAuth error code (or transport label)."}, []string{"issuer", "endpoint", "error"}),
			jwksRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "jwks_refreshes_total", Help: "JWKS fetches, by issuer and result (ok, error)."}, []string{"issuer", "result"}),
			redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "redis_errors_total", Help: "Failed Redis operations of the shared cache tier, by issuer and operation."}, []string{"issuer", "op"}),
			coalesced: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "coalesced_requests_total", Help: "Requests that waited for another request's validation of the same token instead of calling upstream, by issuer."}, []string{"issuer"}),
			issuers: map[string]*issuerMetrics{},
		}
		// Only what can happen before any issuer is asked exists from
		// the start; the rest of issuer "" appears when first counted,
		// so that a route's own issuer is, for each outcome, the one
		// series a dashboard (or a test) finds.
		m.none = &issuerMetrics{m: m, issuer: "", byOutcome: map[string]prometheus.Counter{
			"no_credentials":  m.decisions.WithLabelValues("", "no_credentials"),
			"invalid_request": m.decisions.WithLabelValues("", "invalid_request"),
		}}
		globalMetrics = m
	})
	return globalMetrics
}

// forIssuer returns the series of a configured issuer, resolving them (at
// 0) the first time: the outcomes of a validated token, the cache tiers,
// the JWKS and coalescing. Called at provisioning, never per
// request.
func (m *metrics) forIssuer(issuer string) *issuerMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if im, ok := m.issuers[issuer]; ok {
		return im
	}
	im := &issuerMetrics{m: m, issuer: issuer, byOutcome: map[string]prometheus.Counter{},
		memHit:    m.cacheRequests.WithLabelValues(issuer, "memory", "hit"),
		memMiss:   m.cacheRequests.WithLabelValues(issuer, "memory", "miss"),
		redisHit:  m.cacheRequests.WithLabelValues(issuer, "redis", "hit"),
		redisMiss: m.cacheRequests.WithLabelValues(issuer, "redis", "miss"),
		coalesced: m.coalesced.WithLabelValues(issuer),
		jwksOK:    m.jwksRefreshes.WithLabelValues(issuer, "ok"),
		jwksError: m.jwksRefreshes.WithLabelValues(issuer, "error"),
	}
	for _, o := range outcomes {
		// A missing or malformed token is refused before any issuer is
		// asked (invalid_request can still come after, when the token
		// is taken off the request: it then appears when counted).
		if o != "no_credentials" && o != "invalid_request" {
			im.byOutcome[o] = m.decisions.WithLabelValues(issuer, o)
		}
	}
	im.allowed = im.byOutcome["allowed"]
	m.issuers[issuer] = im
	return im
}

func (m *metrics) register(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.decisions, m.cacheRequests, m.upstreamDur,
		m.upstreamErrs, m.jwksRefreshes, m.redisErrors, m.coalesced} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// decision counts a decision no issuer took part in.
func (m *metrics) decision(outcome string) { m.none.decision(outcome) }

func (im *issuerMetrics) decision(outcome string) {
	if c, ok := im.byOutcome[outcome]; ok {
		c.Inc()
	} else if slices.Contains(outcomes, outcome) {
		im.m.decisions.WithLabelValues(im.issuer, outcome).Inc()
	}
}

// orChild is c, else the child of vec with labels: what none resolves lazily.
func orChild(c prometheus.Counter, vec *prometheus.CounterVec, labels ...string) prometheus.Counter {
	if c != nil {
		return c
	}
	return vec.WithLabelValues(labels...)
}

// The methods below make *issuerMetrics the observer of one issuer's cache,
// introspection client and JWKS; *metrics observes as issuer "".

func (m *metrics) CacheRequest(tier string, hit bool) { m.none.CacheRequest(tier, hit) }
func (m *metrics) RedisError(op string)               { m.none.RedisError(op) }
func (m *metrics) Coalesced()                         { m.none.Coalesced() }
func (m *metrics) JWKSRefresh(ok bool)                { m.none.JWKSRefresh(ok) }
func (m *metrics) UpstreamCall(endpoint string, d time.Duration, errCode string) {
	m.none.UpstreamCall(endpoint, d, errCode)
}

func (im *issuerMetrics) CacheRequest(tier string, hit bool) {
	res := "miss"
	if hit {
		res = "hit"
	}
	var c prometheus.Counter
	switch {
	case tier == "memory" && hit:
		c = im.memHit
	case tier == "memory":
		c = im.memMiss
	case tier == "redis" && hit:
		c = im.redisHit
	case tier == "redis":
		c = im.redisMiss
	}
	orChild(c, im.m.cacheRequests, im.issuer, tier, res).Inc()
}

func (im *issuerMetrics) RedisError(op string) { im.m.redisErrors.WithLabelValues(im.issuer, op).Inc() }

func (im *issuerMetrics) Coalesced() { orChild(im.coalesced, im.m.coalesced, im.issuer).Inc() }

func (im *issuerMetrics) UpstreamCall(endpoint string, d time.Duration, errCode string) {
	im.m.upstreamDur.WithLabelValues(im.issuer, endpoint).Observe(d.Seconds())
	if errCode != "" {
		im.m.upstreamErrs.WithLabelValues(im.issuer, endpoint, boundedLabel(errCode)).Inc()
	}
}

func (im *issuerMetrics) JWKSRefresh(ok bool) {
	if ok {
		orChild(im.jwksOK, im.m.jwksRefreshes, im.issuer, "ok").Inc()
	} else {
		orChild(im.jwksError, im.m.jwksRefreshes, im.issuer, "error").Inc()
	}
}

// boundedLabel keeps label values to a known set: an authorization server
// must not be able to create unbounded time series by inventing error codes.
func boundedLabel(code string) string {
	switch code {
	case "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
		"unsupported_grant_type", "invalid_scope", "invalid_token", "insufficient_scope",
		"server_error", "temporarily_unavailable", "transport", "bad_response",
		"http_400", "http_401", "http_403", "http_404", "http_429", "http_500", "http_502", "http_503", "http_504":
		return code
	}
	return "other"
}
