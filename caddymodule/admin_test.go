package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/cache"
	"github.com/tokengate/tokengate/internal/redistest"
)

// adminPost posts body to the test Caddy's admin API.
func (tc *testCaddy) adminPost(path, body string) result {
	tc.t.Helper()
	resp, err := tc.client.Post("http://"+tc.admin+path, "application/json", strings.NewReader(body))
	if err != nil {
		tc.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// adminCount posts to the admin API, requires 200 with the JSON answer and
// returns its evicted count.
func (tc *testCaddy) adminCount(path, body string) int {
	tc.t.Helper()
	r := tc.adminPost(path, body)
	if r.status != http.StatusOK {
		tc.t.Fatalf("POST %s: status %d, want 200 (body %q)", path, r.status, r.body)
	}
	var a adminAnswer
	if err := json.Unmarshal([]byte(r.body), &a); err != nil {
		tc.t.Fatalf("POST %s: body %q is not the JSON answer: %v", path, r.body, err)
	}
	if a.Caches != 1 {
		tc.t.Errorf("POST %s: caches = %d, want 1", path, a.Caches)
	}
	return a.Evicted
}

// jwtSiteWithRedis guards "respond ok" with locally verified demo JWTs and a
// shared Redis tier; cacheExtra adds cache settings (one per line).
func jwtSiteWithRedis(redisURL, cacheExtra string) string {
	return fmt.Sprintf(`	bearer_auth {
		issuer %s
		audience %s
		jwt {
			jwks_file ../demo/demo-jwks.json
		}
		cache {
			redis %s
%s		}
	}
	respond "ok"`, demoIssuer, demoAudience, redisURL, cacheExtra)
}

// "evicted" counts entries actually removed, so that an operator can tell
// a revoked decision from a token (or fingerprint) no gateway cached.
func TestAdminEvictCountsOnlyRemovedEntries(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tc := startCaddy(t, jwtSiteWithRedis(srv.URL(), ""))

	if n := tc.adminCount("/bearer-auth/evict", `{"token":"never-seen"}`); n != 0 {
		t.Errorf("evict of a token never seen: evicted = %d, want 0", n)
	}
	unknownFP := cache.NewKeyer(nil).Key("never-seen").Fingerprint()
	if n := tc.adminCount("/bearer-auth/evict", fmt.Sprintf(`{"fingerprint":%q}`, unknownFP)); n != 0 {
		t.Errorf("evict of an unknown fingerprint: evicted = %d, want 0", n)
	}

	tok := mint(t, demoKey, demoIssuer, demoAudience, "read", "demo-client", time.Hour, time.Now())
	if r := tc.get("/", "Bearer "+tok); r.status != http.StatusOK {
		t.Fatalf("GET with a good token: %d %s", r.status, r.body)
	}
	// In memory and in Redis: one entry.
	if n := tc.adminCount("/bearer-auth/evict", fmt.Sprintf(`{"token":%q}`, tok)); n != 1 {
		t.Errorf("evict of a cached token: evicted = %d, want 1", n)
	}
	if n := tc.adminCount("/bearer-auth/evict", fmt.Sprintf(`{"token":%q}`, tok)); n != 0 {
		t.Errorf("second evict of the same token: evicted = %d, want 0", n)
	}

	if r := tc.get("/", "Bearer "+tok); r.status != http.StatusOK {
		t.Fatalf("GET after the eviction: %d %s", r.status, r.body)
	}
	if n := tc.adminCount("/bearer-auth/flush", ""); n != 1 {
		t.Errorf("flush with one cached token: evicted = %d, want 1", n)
	}
	if n := tc.adminCount("/bearer-auth/flush", ""); n != 0 {
		t.Errorf("flush of an empty cache: evicted = %d, want 0", n)
	}
}

// With Redis down, an eviction is applied locally and answered 503 (the
// fleet may not have heard) within a small multiple of redis_timeout, not
// after one admin deadline per Redis command.
func TestAdminEvictWithRedisDownAnswers503WithinRedisTimeout(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const redisTimeout = 50 * time.Millisecond
	tc := startCaddy(t, jwtSiteWithRedis(srv.URL(), fmt.Sprintf("\t\t\tredis_timeout %v\n", redisTimeout)))
	tok := mint(t, demoKey, demoIssuer, demoAudience, "read", "demo-client", time.Hour, time.Now())
	if r := tc.get("/", "Bearer "+tok); r.status != http.StatusOK {
		t.Fatalf("GET with a good token: %d %s", r.status, r.body)
	}
	srv.Kill()

	fp := cache.NewKeyer(nil).Key(tok).Fingerprint()
	for _, c := range []struct{ what, path, body string }{
		{"evict by token", "/bearer-auth/evict", fmt.Sprintf(`{"token":%q}`, tok)},
		{"evict by fingerprint", "/bearer-auth/evict", fmt.Sprintf(`{"fingerprint":%q}`, fp)},
		{"flush", "/bearer-auth/flush", ""},
	} {
		start := time.Now()
		r := tc.adminPost(c.path, c.body)
		el := time.Since(start)
		t.Logf("%s with Redis down answered %d in %v", c.what, r.status, el)
		if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "evicted on this instance") {
			t.Errorf("%s with Redis down: status %d (body %q), want 503 saying the local eviction is done", c.what, r.status, r.body)
		}
		if bound := 10 * redisTimeout; el > bound {
			t.Errorf("%s with Redis down took %v, want < %v (redis_timeout %v)", c.what, el, bound, redisTimeout)
		}
	}
}
