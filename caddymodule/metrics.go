package caddymodule

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are process-wide, like Caddy's own HTTP metrics: each config load
// has a fresh registry, and the same collectors are registered into it, so
// counters survive reloads instead of resetting.
type metrics struct {
	decisions     *prometheus.CounterVec
	cacheRequests *prometheus.CounterVec
	upstreamDur   *prometheus.HistogramVec
	upstreamErrs  *prometheus.CounterVec
	jwksRefreshes *prometheus.CounterVec
	redisErrors   *prometheus.CounterVec
	coalesced     prometheus.Counter

	// Pre-resolved children: With/WithLabelValues costs a map lookup and a
	// hash per request, which the warm path should not pay.
	byOutcome map[string]prometheus.Counter
	// allowed is byOutcome["allowed"], the one counted on every good request.
	allowed prometheus.Counter
	// The cache hit/miss counters of the two known tiers.
	memHit, memMiss, redisHit, redisMiss prometheus.Counter
}

// The metric names are caddy_bearer_auth_<name>, beside Caddy's own
// caddy_http_* metrics.
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
				Name: "decisions_total", Help: "Requests decided by bearer_auth, by outcome."}, []string{"outcome"}),
			cacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "cache_requests_total", Help: "Decision cache lookups by tier (memory, redis) and result (hit, miss)."}, []string{"tier", "result"}),
			upstreamDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "upstream_request_duration_seconds", Help: "Latency of calls to the authorization server, by endpoint.",
				Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"endpoint"}),
			upstreamErrs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "upstream_errors_total", Help: "Failed calls to the authorization server, by endpoint and OAuth error code (or transport label)."}, []string{"endpoint", "error"}),
			jwksRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "jwks_refreshes_total", Help: "JWKS fetches, by result (ok, error)."}, []string{"result"}),
			redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "redis_errors_total", Help: "Failed Redis operations of the shared cache tier, by operation."}, []string{"op"}),
			coalesced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "coalesced_requests_total", Help: "Requests that waited for another request's validation of the same token instead of calling upstream."}),
			byOutcome: map[string]prometheus.Counter{},
		}
		for _, o := range outcomes {
			m.byOutcome[o] = m.decisions.WithLabelValues(o)
		}
		m.allowed = m.byOutcome["allowed"]
		m.memHit = m.cacheRequests.WithLabelValues("memory", "hit")
		m.memMiss = m.cacheRequests.WithLabelValues("memory", "miss")
		m.redisHit = m.cacheRequests.WithLabelValues("redis", "hit")
		m.redisMiss = m.cacheRequests.WithLabelValues("redis", "miss")
		globalMetrics = m
	})
	return globalMetrics
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

func (m *metrics) decision(outcome string) {
	if c, ok := m.byOutcome[outcome]; ok {
		c.Inc()
	}
}

// The methods below make *metrics the observer of the cache, the
// introspection client and the JWKS.

func (m *metrics) CacheRequest(tier string, hit bool) {
	switch {
	case tier == "memory" && hit:
		m.memHit.Inc()
		return
	case tier == "memory":
		m.memMiss.Inc()
		return
	case tier == "redis" && hit:
		m.redisHit.Inc()
		return
	case tier == "redis":
		m.redisMiss.Inc()
		return
	}
	res := "miss"
	if hit {
		res = "hit"
	}
	m.cacheRequests.WithLabelValues(tier, res).Inc()
}

func (m *metrics) RedisError(op string) { m.redisErrors.WithLabelValues(op).Inc() }

func (m *metrics) Coalesced() { m.coalesced.Inc() }

func (m *metrics) UpstreamCall(endpoint string, d time.Duration, errCode string) {
	m.upstreamDur.WithLabelValues(endpoint).Observe(d.Seconds())
	if errCode != "" {
		m.upstreamErrs.WithLabelValues(endpoint, boundedLabel(errCode)).Inc()
	}
}

func (m *metrics) JWKSRefresh(ok bool) {
	if ok {
		m.jwksRefreshes.WithLabelValues("ok").Inc()
	} else {
		m.jwksRefreshes.WithLabelValues("error").Inc()
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
