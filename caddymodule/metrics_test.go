package caddymodule

import (
	"net/http"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tokengate/tokengate/internal/redistest"
	"github.com/tokengate/tokengate/internal/testas"
)

// The metrics are process-wide (they survive config reloads), so every test
// here scrapes its own Caddy process, whose counters start at zero.

type scraped map[string]*dto.MetricFamily

// scrape reads the Prometheus text exposition of p's admin /metrics.
func scrape(t *testing.T, p *caddyProcess) scraped {
	t.Helper()
	resp, err := testClient.Get(p.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// series returns the metrics of family name whose labels include labels.
func (s scraped) series(name string, labels map[string]string) []*dto.Metric {
	f := s[name]
	if f == nil {
		return nil
	}
	var out []*dto.Metric
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// counter returns the value of the one counter series of name with exactly
// the given label values; a missing series is reported as -1.
func (s scraped) counter(name string, labels map[string]string) float64 {
	ms := s.series(name, labels)
	if len(ms) == 0 {
		return -1
	}
	if len(ms) > 1 {
		return -2
	}
	return ms[0].GetCounter().GetValue()
}

// sum adds every counter series of name.
func (s scraped) sum(name string) float64 {
	var n float64
	for _, m := range s.series(name, nil) {
		n += m.GetCounter().GetValue()
	}
	return n
}

// histogramCount returns the sample count of the histogram series with the
// given labels, 0 if the series does not exist yet.
func (s scraped) histogramCount(name string, labels map[string]string) uint64 {
	ms := s.series(name, labels)
	if len(ms) != 1 {
		return 0
	}
	return ms[0].GetHistogram().GetSampleCount()
}

// expectCounters compares counters (name{k="v",...} -> value) and reports
// every mismatch at once.
func (s scraped) expectCounters(t *testing.T, want map[string]float64) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name, labels := parseSeries(t, k)
		got := s.counter(name, labels)
		switch got {
		case -1:
			t.Errorf("%s: no such series in /metrics", k)
		case -2:
			t.Errorf("%s: more than one series matches", k)
		default:
			if got != want[k] {
				t.Errorf("%s = %v, want %v", k, got, want[k])
			}
		}
	}
}

// parseSeries splits `name{a="x",b="y"}`.
func parseSeries(t *testing.T, s string) (string, map[string]string) {
	t.Helper()
	name, rest, ok := strings.Cut(s, "{")
	labels := map[string]string{}
	if !ok {
		return name, labels
	}
	for _, pair := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			t.Fatalf("bad series %q", s)
		}
		labels[k] = strings.Trim(v, `"`)
	}
	return name, labels
}

const (
	mDecisions = "caddy_bearer_auth_decisions_total"
	mCache     = "caddy_bearer_auth_cache_requests_total"
	mUpstream  = "caddy_bearer_auth_upstream_request_duration_seconds"
	mUpErrors  = "caddy_bearer_auth_upstream_errors_total"
	mRedisErrs = "caddy_bearer_auth_redis_errors_total"
)

func TestMetricsCountDecisionsCacheLookupsAndIntrospections(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	p := startCaddyProcess(t, introspectSite(as, "scopes read"))

	good := as.Token(t, "svc-a", "read")
	lacking := as.Token(t, "svc-a", "write")
	for _, step := range []struct {
		auth   string
		status int
	}{
		{"", 401},                        // no_credentials
		{"Bearer a b", 400},              // invalid_request: no cache lookup, no AS call
		{"Bearer " + good, 200},          // memory miss, introspection 1
		{"Bearer " + good, 200},          // memory hit
		{"Bearer " + lacking, 403},       // memory miss, introspection 2, insufficient_scope
		{"Bearer not-a-real-token", 401}, // memory miss, introspection 3, invalid_token
	} {
		req, _ := http.NewRequest(http.MethodGet, p.Base+"/", nil)
		if step.auth != "" {
			req.Header.Set("Authorization", step.auth)
		}
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != step.status {
			t.Fatalf("%.20q: status %d, want %d", step.auth, resp.StatusCode, step.status)
		}
	}
	if n := as.IntrospectionCalls(); n != 3 {
		t.Fatalf("introspection calls = %d, want 3 (the test's arithmetic is off)", n)
	}

	m := scrape(t, p)
	m.expectCounters(t, map[string]float64{
		mDecisions + `{outcome="no_credentials"}`:      1,
		mDecisions + `{outcome="invalid_request"}`:     1,
		mDecisions + `{outcome="allowed"}`:             2,
		mDecisions + `{outcome="insufficient_scope"}`:  1,
		mDecisions + `{outcome="invalid_token"}`:       1,
		mDecisions + `{outcome="unauthorized_client"}`: 0,
		mDecisions + `{outcome="unavailable"}`:         0,
		mCache + `{tier="memory",result="hit"}`:        1,
		mCache + `{tier="memory",result="miss"}`:       3,
		mCache + `{tier="redis",result="hit"}`:         0,
		mCache + `{tier="redis",result="miss"}`:        0,
	})
	if n := m.histogramCount(mUpstream, map[string]string{"endpoint": "introspection"}); n != 3 {
		t.Errorf(`%s_count{endpoint="introspection"} = %d, want 3`, mUpstream, n)
	}
	if f := m[mUpstream]; f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("%s is not a histogram", mUpstream)
	}
	if n := m.sum(mUpErrors); n != 0 {
		t.Errorf("%s = %v, want 0 (inactive tokens are answers, not AS errors)", mUpErrors, n)
	}
	if n := m.sum(mRedisErrs); n != 0 {
		t.Errorf("%s = %v without Redis configured", mRedisErrs, n)
	}

	// The AS gone: one unavailable decision and one transport error.
	fresh := as.Token(t, "svc-a", "read")
	as.Stop()
	if r, _ := call(t, p, fresh); r.status != http.StatusServiceUnavailable {
		t.Fatalf("with the AS stopped: status %d, want 503", r.status)
	}
	m = scrape(t, p)
	m.expectCounters(t, map[string]float64{
		mDecisions + `{outcome="unavailable"}`:                     1,
		mUpErrors + `{endpoint="introspection",error="transport"}`: 1,
	})
	if n := m.histogramCount(mUpstream, map[string]string{"endpoint": "introspection"}); n != 4 {
		t.Errorf(`%s_count{endpoint="introspection"} = %d, want 4`, mUpstream, n)
	}
}

func TestMetricsRedisTierLookupsAndErrors(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	srv := redistest.Start(t)
	site := fleetSite(as, srv.URL(), "", "")
	a, b := startCaddyProcess(t, site), startCaddyProcess(t, site)

	tok := as.Token(t, "svc-a", "read")
	mustAllow(t, a, tok, "A")
	mustAllow(t, b, tok, "B")

	scrape(t, a).expectCounters(t, map[string]float64{
		mCache + `{tier="memory",result="miss"}`: 1,
		mCache + `{tier="redis",result="miss"}`:  1,
		mCache + `{tier="redis",result="hit"}`:   0,
	})
	mb := scrape(t, b)
	mb.expectCounters(t, map[string]float64{
		mCache + `{tier="memory",result="miss"}`: 1,
		mCache + `{tier="redis",result="hit"}`:   1,
		mCache + `{tier="redis",result="miss"}`:  0,
	})
	if n := mb.histogramCount(mUpstream, map[string]string{"endpoint": "introspection"}); n != 0 {
		t.Errorf("B called the AS %d times for a token in Redis", n)
	}
	if n := mb.sum(mRedisErrs); n != 0 {
		t.Errorf("%s = %v before the outage", mRedisErrs, n)
	}

	srv.Kill()
	const fresh = 5
	for range fresh {
		mustAllow(t, b, as.Token(t, "svc-a", "read"), "B during the outage")
	}
	mb = scrape(t, b)
	errs := mb.sum(mRedisErrs)
	// The circuit breaker opens after 3 consecutive failures and then skips
	// Redis for 2 s, so 5 requests cost at most 3 (+1 probe) failed calls.
	if errs < 1 || errs > 4 {
		t.Errorf("%s = %v after Redis was killed and %d requests, want 1..4", mRedisErrs, errs, fresh)
	}
	if n := mb.counter(mRedisErrs, map[string]string{"op": "get"}); n < 1 {
		t.Errorf(`%s{op="get"} = %v, want >= 1`, mRedisErrs, n)
	}
	mb.expectCounters(t, map[string]float64{
		mDecisions + `{outcome="allowed"}`: 1 + fresh,
	})
	if n := mb.histogramCount(mUpstream, map[string]string{"endpoint": "introspection"}); n != fresh {
		t.Errorf(`%s_count{endpoint="introspection"} = %d, want %d`, mUpstream, n, fresh)
	}
}
