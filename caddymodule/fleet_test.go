package caddymodule

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokengate/tokengate/cache"
	"github.com/tokengate/tokengate/internal/redistest"
	"github.com/tokengate/tokengate/internal/testas"
)

// The tests in this file run a fleet: separate Caddy processes (the test
// binary re-executed, see startCaddyProcess) sharing one real redis-server,
// and a real authorization server that counts introspection calls.

// fleetSite is introspectSite with a shared Redis tier (and more cache
// settings, one per line, in cacheExtra).
func fleetSite(as *testas.Server, redisURL, cacheExtra, extra string) string {
	return introspectSite(as, fmt.Sprintf("\t\tcache {\n\t\t\tredis %s\n%s\t\t}\n%s", redisURL, cacheExtra, extra))
}

// call sends GET / with the token (none if empty) and times the answer.
func call(t *testing.T, p *caddyProcess, token string) (result, time.Duration) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.Base+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", p.Base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}, time.Since(start)
}

// mustAllow asserts that p lets the token through and returns the body.
func mustAllow(t *testing.T, p *caddyProcess, token, what string) string {
	t.Helper()
	r, _ := call(t, p, token)
	if r.status != http.StatusOK {
		t.Fatalf("%s: status %d, want 200 (body %q)", what, r.status, r.body)
	}
	return r.body
}

// mustReject asserts that p answers 401 invalid_token for the token.
func mustReject(t *testing.T, p *caddyProcess, token, what string) {
	t.Helper()
	r, _ := call(t, p, token)
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != invalidTokenChallenge {
		t.Fatalf("%s: status %d, WWW-Authenticate %q; want 401 invalid_token", what, r.status, r.header.Get("WWW-Authenticate"))
	}
}

// adminPost posts body to p's admin API.
func adminPost(t *testing.T, p *caddyProcess, path, body string) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.Admin+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

type adminAnswer struct {
	Evicted int `json:"evicted"`
	Caches  int `json:"caches"`
}

// adminOK posts to the admin API and requires a 2xx JSON answer.
func adminOK(t *testing.T, p *caddyProcess, path, body string) adminAnswer {
	t.Helper()
	r := adminPost(t, p, path, body)
	if r.status < 200 || r.status > 299 {
		t.Fatalf("POST %s %s: status %d, want 2xx (body %q)", path, body, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("POST %s: Content-Type %q, want application/json", path, ct)
	}
	var a adminAnswer
	if err := json.Unmarshal([]byte(r.body), &a); err != nil {
		t.Fatalf("POST %s: body %q is not the JSON answer: %v", path, r.body, err)
	}
	if a.Caches != 1 {
		t.Errorf("POST %s: caches = %d, want 1", path, a.Caches)
	}
	return a
}

const invalidTokenChallenge = `Bearer realm="tokengate", error="invalid_token", error_description="the token is not active (expired, revoked, or unknown to the authorization server)"`

// awaitRejected polls p with the token until it answers 401 invalid_token
// and returns how long that took since since; it fails the test if that
// takes longer than limit, or on any answer but 200 meanwhile.
func awaitRejected(t *testing.T, p *caddyProcess, token string, since time.Time, limit time.Duration) time.Duration {
	t.Helper()
	var r result
	if !eventually(time.Until(since.Add(limit)), 5*time.Millisecond, func() bool {
		r, _ = call(t, p, token)
		if r.status != http.StatusOK && r.status != http.StatusUnauthorized {
			t.Fatalf("status %d while waiting for the eviction (body %q)", r.status, r.body)
		}
		return r.status == http.StatusUnauthorized
	}) {
		t.Fatalf("still allowed %v after the eviction, want rejected within %v", time.Since(since), limit)
	}
	if got := r.header.Get("WWW-Authenticate"); got != invalidTokenChallenge {
		t.Fatalf("rejected, but WWW-Authenticate = %q, want %q", got, invalidTokenChallenge)
	}
	return time.Since(since)
}

func TestFleetSharesDecisionsThroughRedis(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	srv := redistest.Start(t)
	site := fleetSite(as, srv.URL(), "", "")
	a, b := startCaddyProcess(t, site), startCaddyProcess(t, site)

	tok := as.Token(t, "svc-a", "read")
	if body := mustAllow(t, a, tok, "A, first use"); body != "ok svc-a svc-a [read]" {
		t.Fatalf("A: body %q", body)
	}
	if n := as.IntrospectionCalls(); n != 1 {
		t.Fatalf("introspection calls after A = %d, want 1", n)
	}
	// B has never seen the token: its memory misses and Redis answers,
	// with the claims the placeholders need.
	if body := mustAllow(t, b, tok, "B, first use"); body != "ok svc-a svc-a [read]" {
		t.Errorf("B: body %q, want the decision A cached", body)
	}
	if n := as.IntrospectionCalls(); n != 1 {
		t.Errorf("introspection calls after B = %d, want 1: B asked the AS instead of Redis", n)
	}

	// Negative decisions are shared too.
	r, _ := call(t, a, "not-a-real-token")
	r.expect(t, 401, invalidTokenChallenge, `{"error":"invalid_token","error_description":"the token is not active (expired, revoked, or unknown to the authorization server)"}`)
	r, _ = call(t, b, "not-a-real-token")
	if r.status != 401 {
		t.Errorf("B, unknown token: status %d, want 401", r.status)
	}
	if n := as.IntrospectionCalls(); n != 2 {
		t.Errorf("introspection calls after the unknown token on A and B = %d, want 2", n)
	}
}

func TestFleetEvictionThroughAdminAPIReachesOtherInstances(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	srv := redistest.Start(t)
	site := fleetSite(as, srv.URL(), "", "")
	a, b := startCaddyProcess(t, site), startCaddyProcess(t, site)

	// warm caches a token on both instances, revokes it at the AS and
	// checks that both still serve it: only an eviction can change that.
	warm := func(t *testing.T, name string) string {
		t.Helper()
		tok := as.Token(t, "svc-a", "read")
		mustAllow(t, a, tok, name+": A")
		mustAllow(t, b, tok, name+": B")
		as.Revoke(t, "svc-a", tok)
		mustAllow(t, b, tok, name+": B after revocation at the AS, before eviction (cached)")
		mustAllow(t, a, tok, name+": A after revocation at the AS, before eviction (cached)")
		return tok
	}

	t.Run("token", func(t *testing.T) {
		tok := warm(t, "token")
		start := time.Now()
		if got := adminOK(t, a, "/bearer-auth/evict", fmt.Sprintf(`{"token":%q}`, tok)); got.Evicted != 1 {
			t.Errorf("evicted = %d, want 1", got.Evicted)
		}
		d := awaitRejected(t, b, tok, start, time.Second)
		t.Logf("eviction by token reached B after %v", d)
		mustReject(t, a, tok, "A right after its own eviction")
	})

	t.Run("fingerprint", func(t *testing.T) {
		tok := warm(t, "fingerprint")
		fp := cache.NewKeyer(nil).Key(tok).Fingerprint()
		start := time.Now()
		// Upper case is accepted too: it is pasted from logs and tickets.
		if got := adminOK(t, a, "/bearer-auth/evict", fmt.Sprintf(`{"fingerprint":%q}`, strings.ToUpper(fp))); got.Evicted != 1 {
			t.Errorf("evicted = %d, want 1 (the key in A's memory and in Redis)", got.Evicted)
		}
		d := awaitRejected(t, b, tok, start, time.Second)
		t.Logf("eviction by fingerprint reached B after %v", d)
		mustReject(t, a, tok, "A right after its own eviction")
	})

	t.Run("flush", func(t *testing.T) {
		tok := warm(t, "flush")
		other := as.Token(t, "svc-b", "read")
		mustAllow(t, b, other, "other token on B")
		start := time.Now()
		adminOK(t, a, "/bearer-auth/flush", "")
		d := awaitRejected(t, b, tok, start, time.Second)
		t.Logf("flush reached B after %v", d)
		mustReject(t, a, tok, "A right after its own eviction")
		// Flushed, not broken: a good token is introspected again.
		before := as.IntrospectionCalls()
		mustAllow(t, b, other, "other token on B after the flush")
		if n := as.IntrospectionCalls() - before; n != 1 {
			t.Errorf("introspection calls for a flushed token = %d, want 1", n)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, body := range []string{
			``,
			`not json`,
			`{}`,
			`{"token":""}`,
			`{"token":"x","fingerprint":"0123456789abcdef"}`,
			`{"fingerprint":"0123"}`,
			`{"fingerprint":"0123456789abcdeg"}`,
			`{"fingerprint":"0123456789abcde*"}`,
			`{"fingerprint":"*"}`,
			`{"token":["x"]}`,
			`{"token":"x","fingerprnt":"0123456789abcdef"}`,
		} {
			r := adminPost(t, a, "/bearer-auth/evict", body)
			if r.status != http.StatusBadRequest {
				t.Errorf("evict %s: status %d, want 400 (body %q)", body, r.status, r.body)
			}
			var e struct{ Error string }
			if json.Unmarshal([]byte(r.body), &e) != nil || e.Error == "" {
				t.Errorf("evict %s: body %q is not a JSON error", body, r.body)
			}
		}
		for _, path := range []string{"/bearer-auth/evict", "/bearer-auth/flush"} {
			resp, err := testClient.Get(a.Admin + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("GET %s: status %d, want 405", path, resp.StatusCode)
			}
		}
	})
}

func TestFleetSurvivesRedisOutageAndUsesItAgainAfterRestart(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	srv := redistest.Start(t)
	site := fleetSite(as, srv.URL(), "", "")
	a, b := startCaddyProcess(t, site), startCaddyProcess(t, site)

	cached := as.Token(t, "svc-a", "read")
	mustAllow(t, a, cached, "A before the outage")

	srv.Kill()
	const bound = time.Second
	check := func(p *caddyProcess, tok, what string) {
		t.Helper()
		r, d := call(t, p, tok)
		if r.status != http.StatusOK {
			t.Fatalf("%s during the Redis outage: status %d (body %q)", what, r.status, r.body)
		}
		if d > bound {
			t.Errorf("%s during the Redis outage took %v, want < %v", what, d, bound)
		}
	}
	for i := range 5 {
		check(a, cached, fmt.Sprintf("cached token #%d on A", i))
		check(a, as.Token(t, "svc-a", "read"), fmt.Sprintf("fresh token #%d on A", i))
	}
	// B has the cached token neither in memory nor (reachable) in Redis.
	check(b, cached, "token new to B")
	// Still in A's memory: no AS call for it.
	before := as.IntrospectionCalls()
	check(a, cached, "cached token on A")
	if n := as.IntrospectionCalls() - before; n != 0 {
		t.Errorf("a token cached in A's memory was introspected again during the outage (%d calls)", n)
	}

	// An eviction during the outage applies locally but cannot reach the
	// fleet: the admin API must say so (503), not claim success, and not
	// blame the request (400).
	revoked := as.Token(t, "svc-a", "read")
	mustAllow(t, a, revoked, "A, token to revoke during the outage")
	as.Revoke(t, "svc-a", revoked)
	start := time.Now()
	r := adminPost(t, a, "/bearer-auth/evict", fmt.Sprintf(`{"token":%q}`, revoked))
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("evict during the Redis outage: status %d, want 503 (body %q)", r.status, r.body)
	}
	t.Logf("evict during the outage answered %d in %v", r.status, time.Since(start))
	mustReject(t, a, revoked, "A after evicting locally during the outage")

	srv.Restart(t)
	restarted := time.Now()
	// Poll with fresh tokens: introspected through A, then served by B
	// from Redis with no AS call, once both use the shared tier again.
	attempts := 0
	waitFor(t, 10*time.Second, 100*time.Millisecond, "B to see decisions A made, after Redis restarted", func() bool {
		attempts++
		tok := as.Token(t, "svc-a", "read")
		mustAllow(t, a, tok, "A after the restart")
		n := as.IntrospectionCalls()
		mustAllow(t, b, tok, "B after the restart")
		return as.IntrospectionCalls() == n
	})
	t.Logf("shared tier in use again %v after the restart (attempt %d)", time.Since(restarted), attempts)

	// The eviction channel is back too: B resubscribed. Each try evicts a
	// fresh token through A and gives the eviction a second to reach B.
	waitFor(t, 10*time.Second, time.Millisecond, "evictions through A to reach B, after Redis restarted", func() bool {
		tok := as.Token(t, "svc-a", "read")
		mustAllow(t, a, tok, "A")
		mustAllow(t, b, tok, "B")
		as.Revoke(t, "svc-a", tok)
		adminOK(t, a, "/bearer-auth/evict", fmt.Sprintf(`{"token":%q}`, tok))
		return eventually(time.Second, 10*time.Millisecond, func() bool {
			r, _ := call(t, b, tok)
			return r.status == http.StatusUnauthorized
		})
	})
	t.Logf("eviction reaches B again %v after the restart", time.Since(restarted))
}

func TestFleetKeySecretKeysRedisByHMACAndStillShares(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	srv := redistest.Start(t)
	const secret = "fleet-secret-1"
	site := fleetSite(as, srv.URL(), "\t\t\tkey_secret "+secret+"\n", "")
	a, b := startCaddyProcess(t, site), startCaddyProcess(t, site)

	tok := as.Token(t, "svc-a", "read")
	mustAllow(t, a, tok, "A")

	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := rc.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	plain := sha256.Sum256([]byte(tok))
	plainHex := hex.EncodeToString(plain[:])
	keyed := cache.NewKeyer([]byte(secret)).Key(tok)
	wantKey := ":d:{" + keyed.Fingerprint() + "}" + keyed.String()[len(keyed.Fingerprint()):]
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "tokengate:") || !strings.HasSuffix(keys[0], wantKey) {
		t.Fatalf("Redis keys = %q, want exactly [%q]", keys, wantKey)
	}
	for _, k := range keys {
		if strings.Contains(k, plainHex) || strings.Contains(k, plainHex[:16]) {
			t.Errorf("Redis key %q contains the plain SHA-256 of the token", k)
		}
		v, err := rc.Get(ctx, k).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range strings.Split(tok, ".") {
			if len(part) >= 16 && bytes.Contains(v, []byte(part)) {
				t.Errorf("the Redis value holds part of the raw token")
			}
		}
		if !bytes.Contains(v, []byte("svc-a")) {
			t.Errorf("the Redis value %q does not hold the decision", v)
		}
		if ttl, err := rc.PTTL(ctx, k).Result(); err != nil || ttl <= 0 || ttl > 5*time.Minute {
			t.Errorf("PTTL = %v, %v; want a positive lifetime of at most the 5m ttl", ttl, err)
		}
	}

	n := as.IntrospectionCalls()
	mustAllow(t, b, tok, "B with the same key_secret")
	if got := as.IntrospectionCalls(); got != n {
		t.Errorf("B asked the AS (%d calls): instances with the same key_secret must share", got-n)
	}

	// A fingerprint from the logs is the keyed one: eviction by it works.
	as.Revoke(t, "svc-a", tok)
	fp := cache.NewKeyer([]byte(secret)).Key(tok).Fingerprint()
	start := time.Now()
	if got := adminOK(t, a, "/bearer-auth/evict", fmt.Sprintf(`{"fingerprint":%q}`, fp)); got.Evicted != 1 {
		t.Errorf("evict by keyed fingerprint: evicted = %d, want 1", got.Evicted)
	}
	awaitRejected(t, b, tok, start, time.Second)
}

// Redis that answers slowly (every client paused) or refuses writes (out of
// memory) costs each request at most the Redis timeout, never a failure.
func TestFleetSlowOrFullRedisNeitherSlowsNorFailsRequests(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	slow := redistest.Start(t)
	full := redistest.StartArgs(t, "--maxmemory", "1", "--maxmemory-policy", "noeviction")
	a := startCaddyProcess(t, fleetSite(as, slow.URL(), "\t\t\tredis_timeout 50ms\n", ""))
	cached := as.Token(t, "svc-a", "read")
	mustAllow(t, a, cached, "A before Redis slows down")

	rc := redis.NewClient(&redis.Options{Addr: slow.Addr()})
	t.Cleanup(func() { rc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Every command of every other client now waits 3 s for an answer.
	if err := rc.Do(ctx, "CLIENT", "PAUSE", "3000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	const bound = time.Second
	for i := range 5 {
		for _, tok := range []string{cached, as.Token(t, "svc-a", "read")} {
			r, d := call(t, a, tok)
			if r.status != http.StatusOK || d > bound {
				t.Errorf("request %d with Redis paused: status %d in %v, want 200 within %v", i, r.status, d, bound)
			}
		}
	}
	if time.Since(paused) > 2500*time.Millisecond {
		t.Fatalf("the requests took %v: Redis was no longer paused for all of them", time.Since(paused))
	}

	b := startCaddyProcess(t, fleetSite(as, full.URL(), "", ""))
	c := startCaddyProcess(t, fleetSite(as, full.URL(), "", ""))
	tok := as.Token(t, "svc-a", "read")
	mustAllow(t, b, tok, "B with Redis out of memory")
	mustAllow(t, c, tok, "C with Redis out of memory")
	if n := as.IntrospectionCalls(); n < 2 {
		t.Errorf("introspection calls = %d: a full Redis cannot have shared the decision", n)
	}
	if n := scrape(t, b).counter(mRedisErrs, map[string]string{"op": "set"}); n != 1 {
		t.Errorf(`B: %s{op="set"} = %v, want 1 (the refused write)`, mRedisErrs, n)
	}
}

// TestFleetRedisOutageIsQuietOnStderr checks what an operator sees in the
// process output while Redis is down: the cache's own rate-limited warnings,
// not a line from the Redis client every few hundred milliseconds.
func TestFleetRedisOutageIsQuietOnStderr(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	srv := redistest.Start(t)
	a := startCaddyProcess(t, fleetSite(as, srv.URL(), "", ""))
	mustAllow(t, a, as.Token(t, "svc-a", "read"), "before the outage")
	srv.Kill()
	// Traffic through a 3 s outage, paced: the go-redis lines this is about
	// come from its reconnect loops, which are driven by time.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		mustAllow(t, a, as.Token(t, "svc-a", "read"), "during the outage")
		time.Sleep(100 * time.Millisecond)
	}
	// Stop the process so that its output is complete.
	a.stop()
	out := a.out.String()
	var redisLines []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "redis: ") {
			redisLines = append(redisLines, line)
		}
	}
	if len(redisLines) > 0 {
		t.Errorf("go-redis wrote %d lines of its own to stderr during a 3 s outage, e.g.\n%s", len(redisLines), strings.Join(redisLines[:min(5, len(redisLines))], "\n"))
	}
	if !strings.Contains(out, "redis tier") {
		t.Errorf("no warning about the Redis tier in the process output:\n%s", out)
	}
}
