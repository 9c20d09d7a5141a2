package cache

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/tokengate/tokengate/internal/redistest"
)

func startRedis(t testing.TB) *redistest.Server { return redistest.Start(t) }

// fleet starts two caches (two "gateways") sharing one Redis.
func fleet(t *testing.T, srv *redistest.Server, ns string) (a, b *Cache[*verdict], oa, ob *countingObserver) {
	t.Helper()
	mk := func(name string, o *countingObserver) *Cache[*verdict] {
		c, err := New(Config{
			Observer: o,
			Logger:   zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(name),
			Redis:    &RedisConfig{URL: srv.URL(), Namespace: ns},
		}, JSONCodec[*verdict]{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	oa, ob = newObserver(), newObserver()
	return mk("A", oa), mk("B", ob), oa, ob
}

func rawClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// decisionKey spells out the documented Redis key of a decision.
func decisionKey(ns string, k Key) string {
	return ns + ":d:{" + k.Fingerprint() + "}" + k.String()[len(k.Fingerprint()):]
}

func inMemory(c *Cache[*verdict], k Key) bool {
	_, ok := c.mem.GetIfPresent(k)
	return ok
}

func TestSharedTier(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := startRedis(t)
	a, b, _, ob := fleet(t, srv, "t1")
	k := plain.Key("shared")

	a.Set(ctx, k, &verdict{Active: true, Sub: "dave"}, 300*time.Millisecond)

	// The value is stored under <ns>:d:{<fingerprint>}<rest of the hex key>
	// with a PX expiry, not the token.
	rc := rawClient(t, srv)
	pttl, err := rc.PTTL(ctx, decisionKey("t1", k)).Result()
	if err != nil || pttl <= 0 || pttl > 300*time.Millisecond {
		t.Fatalf("PTTL = %v, %v", pttl, err)
	}

	v, ok := b.Get(ctx, k)
	if !ok || v.Sub != "dave" {
		t.Fatalf("B.Get = %v, %v", v, ok)
	}
	if ob.req("memory/miss") != 1 || ob.req("redis/hit") != 1 {
		t.Fatalf("B observer: %v", ob.requests)
	}
	if !inMemory(b, k) {
		t.Fatal("redis hit not promoted to B's memory")
	}
	if _, ok := b.Get(ctx, k); !ok || ob.req("memory/hit") != 1 {
		t.Fatalf("second B.Get not a memory hit: %v", ob.requests)
	}
	// The promoted copy lives only as long as the Redis key had left.
	waitFor(t, time.Second, "promoted entry to expire with the shared one", func() bool {
		return !inMemory(b, k)
	})

	// Load on B finds a value A stored, without calling the loader.
	k2 := plain.Key("shared-load")
	a.Set(ctx, k2, &verdict{Sub: "erin"}, time.Minute)
	v, cached, err := b.Load(ctx, k2, func(context.Context) (*verdict, time.Duration, error) {
		t.Error("loader called although Redis has the value")
		return nil, 0, nil
	})
	if err != nil || !cached || v.Sub != "erin" {
		t.Fatalf("B.Load = %v, %v, %v", v, cached, err)
	}
	// And a value B loads is shared with A.
	k3 := plain.Key("loaded-by-b")
	if _, _, err := b.Load(ctx, k3, func(context.Context) (*verdict, time.Duration, error) {
		return &verdict{Sub: "frank"}, time.Minute, nil
	}); err != nil {
		t.Fatal(err)
	}
	if v, ok := a.Get(ctx, k3); !ok || v.Sub != "frank" {
		t.Fatalf("A.Get of B's load = %v, %v", v, ok)
	}
	if !a.RedisHealthy() || !b.RedisHealthy() {
		t.Fatal("RedisHealthy false with Redis up")
	}
}

func TestNamespacesAreSeparate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := startRedis(t)
	a, _, _, _ := fleet(t, srv, "ns-a")
	_, b, _, _ := fleet(t, srv, "ns-b")
	k := plain.Key("x")
	a.Set(ctx, k, &verdict{}, time.Minute)
	if _, ok := b.Get(ctx, k); ok {
		t.Fatal("namespace ns-b sees ns-a's entry")
	}
	if _, err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	a.mem.Invalidate(k)
	if _, ok := a.Get(ctx, k); !ok {
		t.Fatal("flush of ns-b removed ns-a's entry")
	}
}

func TestFleetEviction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := startRedis(t)
	a, b, _, _ := fleet(t, srv, "t2")

	prime := func(t *testing.T, keys ...Key) {
		t.Helper()
		for _, k := range keys {
			a.Set(ctx, k, &verdict{Active: true}, time.Minute)
			if _, ok := b.Get(ctx, k); !ok || !inMemory(b, k) {
				t.Fatal("B did not pick up A's entry")
			}
		}
	}
	evicted := func(t *testing.T, c *Cache[*verdict], k Key) {
		t.Helper()
		start := time.Now()
		waitFor(t, time.Second, "eviction to reach the other instance", func() bool { return !inMemory(c, k) })
		t.Logf("eviction reached the other instance in %v", time.Since(start))
	}
	gone := func(t *testing.T, c *Cache[*verdict], k Key) {
		t.Helper()
		evicted(t, c, k)
		if _, ok := c.Get(ctx, k); ok {
			t.Fatal("evicted key still in Redis")
		}
	}

	t.Run("Delete", func(t *testing.T) {
		k, keep := plain.Key("d1"), plain.Key("d2")
		prime(t, k, keep)
		if _, err := a.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		if inMemory(a, k) {
			t.Fatal("not evicted locally")
		}
		gone(t, b, k)
		if !inMemory(b, keep) {
			t.Fatal("unrelated key evicted")
		}
	})
	t.Run("DeleteFingerprint", func(t *testing.T) {
		k, keep := plain.Key("f1"), plain.Key("f2")
		prime(t, k, keep)
		// Evicted by fingerprint from B this time (upper case is accepted);
		// A holds it in memory since its Set.
		n, err := b.DeleteFingerprint(ctx, strings.ToUpper(k.Fingerprint()))
		if err != nil || n != 1 {
			t.Fatalf("DeleteFingerprint = %d, %v", n, err)
		}
		gone(t, a, k)
		if !inMemory(a, keep) {
			t.Fatal("unrelated key evicted")
		}
	})
	t.Run("DeleteFingerprintRedisOnly", func(t *testing.T) {
		// A key only Redis holds is counted and removed too.
		k := plain.Key("f3")
		a.Set(ctx, k, &verdict{}, time.Minute)
		a.mem.Invalidate(k)
		n, err := a.DeleteFingerprint(ctx, k.Fingerprint())
		if err != nil || n != 1 {
			t.Fatalf("DeleteFingerprint = %d, %v", n, err)
		}
		if _, ok := b.Get(ctx, k); ok {
			t.Fatal("still in Redis")
		}
	})
	t.Run("ExternalPublish", func(t *testing.T) {
		// An operator can flush the fleet with redis-cli; messages without a
		// sender id are applied by everyone.
		k := plain.Key("ext")
		prime(t, k)
		if err := rawClient(t, srv).Publish(ctx, "t2:evict", "k:"+k.String()).Err(); err != nil {
			t.Fatal(err)
		}
		evicted(t, b, k)
		evicted(t, a, k)
	})
	// Last: a flush's namespace tombstone keeps every decision out of Redis
	// for TombstoneTTL, and the subtests above share decisions through it.
	t.Run("Flush", func(t *testing.T) {
		k1, k2 := plain.Key("x1"), plain.Key("x2")
		prime(t, k1, k2)
		if _, err := a.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if inMemory(a, k1) || inMemory(a, k2) {
			t.Fatal("not flushed locally")
		}
		gone(t, b, k1)
		gone(t, b, k2)
	})
}

func TestRedisOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := startRedis(t)
	const timeout = 50 * time.Millisecond
	oa := newObserver()
	a, err := New(Config{
		Observer: oa,
		Logger:   zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named("A"),
		Redis:    &RedisConfig{URL: srv.URL(), Namespace: "t3", Timeout: timeout},
	}, JSONCodec[*verdict]{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	ob := newObserver()
	b, err := New(Config{
		Observer: ob,
		Logger:   zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named("B"),
		Redis:    &RedisConfig{URL: srv.URL(), Namespace: "t3", Timeout: timeout},
	}, JSONCodec[*verdict]{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	k := plain.Key("before")
	a.Set(ctx, k, &verdict{Sub: "gina"}, time.Minute)

	srv.Kill()

	// Memory keeps serving.
	if v, ok := a.Get(ctx, k); !ok || v.Sub != "gina" {
		t.Fatal("memory tier lost its entry when Redis died")
	}
	// Loads keep working, each bounded well below 10x the Redis timeout.
	var calls atomic.Int32
	var worst time.Duration
	for i := range 20 {
		start := time.Now()
		v, _, err := a.Load(ctx, plain.Key(fmt.Sprint("during-", i)), func(context.Context) (*verdict, time.Duration, error) {
			calls.Add(1)
			return &verdict{Sub: "henry"}, time.Minute, nil
		})
		el := time.Since(start)
		worst = max(worst, el)
		if err != nil || v.Sub != "henry" {
			t.Fatalf("Load with Redis down: %v, %v", v, err)
		}
		if el > 10*timeout {
			t.Fatalf("Load %d took %v with Redis down (timeout %v)", i, el, timeout)
		}
		a.Set(ctx, plain.Key(fmt.Sprint("set-", i)), &verdict{}, time.Minute)
		b.Get(ctx, plain.Key(fmt.Sprint("miss-", i)))
	}
	t.Logf("worst Load latency with Redis down: %v", worst)
	if calls.Load() != 20 {
		t.Fatalf("loader calls = %d", calls.Load())
	}
	if oa.errCount() == 0 {
		t.Fatal("Redis errors not reported to the observer")
	}
	if a.RedisHealthy() {
		t.Fatal("RedisHealthy true while Redis is down and failing")
	}
	// Delete reports that the fleet may not have heard, but evicts locally.
	if _, err := a.Delete(ctx, k); err == nil {
		t.Fatal("Delete with Redis down reported success")
	}
	if inMemory(a, k) {
		t.Fatal("Delete with Redis down did not evict locally")
	}

	srv.Restart(t)
	restarted := time.Now()

	// The shared tier is used again within a few seconds: A's writes reach
	// B through Redis.
	i := 0
	waitEvery(t, 8*time.Second, 50*time.Millisecond, "shared tier to recover", func() bool {
		i++
		k := plain.Key(fmt.Sprint("after-", i))
		a.Set(ctx, k, &verdict{Sub: "ivy"}, time.Minute)
		v, ok := b.Get(ctx, k)
		return ok && v.Sub == "ivy"
	})
	t.Logf("shared tier back %v after restart", time.Since(restarted))
	waitFor(t, 5*time.Second, "RedisHealthy", a.RedisHealthy)

	// And fleet eviction works again once the subscriptions are back.
	k2 := plain.Key("after-restart")
	waitFor(t, 8*time.Second, "eviction after restart", func() bool {
		a.Set(ctx, k2, &verdict{}, time.Minute)
		if _, ok := b.Get(ctx, k2); !ok {
			return false
		}
		_, _ = a.Delete(ctx, k2)
		return eventually(time.Second, 10*time.Millisecond, func() bool { return !inMemory(b, k2) })
	})
	t.Logf("fleet eviction back %v after restart", time.Since(restarted))
}

func TestRedisDownAtStartup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := startRedis(t)
	srv.Kill()
	start := time.Now()
	c, err := New(Config{Redis: &RedisConfig{URL: srv.URL(), Timeout: 20 * time.Millisecond}}, JSONCodec[*verdict]{})
	if err != nil {
		t.Fatal("unreachable Redis made New fail:", err)
	}
	defer c.Close()
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("New took %v with Redis down", el)
	}
	k := plain.Key("k")
	v, _, err := c.Load(ctx, k, func(context.Context) (*verdict, time.Duration, error) {
		return &verdict{Sub: "jo"}, time.Minute, nil
	})
	if err != nil || v.Sub != "jo" {
		t.Fatal(v, err)
	}
	srv.Restart(t)
	raw := rawClient(t, srv)
	waitEvery(t, 8*time.Second, 50*time.Millisecond, "Redis to be used once it comes up", func() bool {
		c.Set(ctx, k, &verdict{Sub: "jo"}, time.Minute)
		n, _ := raw.Exists(ctx, decisionKey("tokengate", k)).Result()
		return n == 1
	})
}

func TestRedisURLForms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url  string
		kind string
	}{
		{"redis://127.0.0.1:6379/0", "*redis.Client"},
		{"rediss://user:pw@redis.example:6380/2?dial_timeout=2s", "*redis.Client"},
		{"unix:///run/redis.sock?db=1", "*redis.Client"},
		{"redis://:pw@sentinel1:26379/0?master_name=mymaster&addr=sentinel2:26379", "*redis.Client"},
		{"redis://node1:7000?addr=node2:7001&addr=node3:7002", "*redis.ClusterClient"},
		{"rediss://node1:7000?cluster=true", "*redis.ClusterClient"},
	} {
		c, err := newRedisClient(tc.url)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if got := fmt.Sprintf("%T", c); got != tc.kind {
			t.Errorf("%s: client %s, want %s", tc.url, got, tc.kind)
		}
		_ = c.Close()
		if err := CheckRedisURL(tc.url); err != nil {
			t.Errorf("CheckRedisURL(%s): %v", tc.url, err)
		}
	}
	for _, bad := range []string{
		"http://127.0.0.1:6379",
		"redis://127.0.0.1:6379?bogus=1",
		"redis://127.0.0.1:6379?cluster=maybe",
		"redis://127.0.0.1:6379/notadb",
		"redis://user:s3cretpw@127.0.0.1:6379/x",
	} {
		_, err := newRedisClient(bad)
		if err == nil {
			t.Errorf("%s accepted", bad)
		} else if strings.Contains(err.Error(), "s3cretpw") {
			t.Errorf("error leaks the password: %v", err)
		}
		// The config check applies the same rules, without connecting.
		if cerr := CheckRedisURL(bad); cerr == nil || cerr.Error() != err.Error() {
			t.Errorf("CheckRedisURL(%s) = %v, want %v", bad, cerr, err)
		}
	}
}

func TestRedisPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.StartArgs(t, "--requirepass", "s3cret")
	url := "redis://:s3cret@" + srv.Addr() + "/0"
	mk := func(url string) *Cache[*verdict] {
		c, err := New(Config{Redis: &RedisConfig{URL: url}}, JSONCodec[*verdict]{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	a, b := mk(url), mk(url)
	k := plain.Key("pw")
	a.Set(ctx, k, &verdict{Sub: "kim"}, time.Minute)
	if v, ok := b.Get(ctx, k); !ok || v.Sub != "kim" {
		t.Fatal("shared tier with a password does not work")
	}
	// A wrong password is Redis trouble like any other: no error to callers.
	wrong := mk("redis://:nope@" + srv.Addr() + "/0")
	if _, ok := wrong.Get(ctx, k); ok {
		t.Fatal("read through a wrong password")
	}
	wrong.Set(ctx, k, &verdict{}, time.Minute)
}

// TestRedisCluster runs the cluster code paths (cluster client, SCAN on
// every primary, Pub/Sub) against a one-node Redis Cluster.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	srv := redistest.StartArgs(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	rc := rawClient(t, srv)
	if err := rc.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "cluster_state:ok", func() bool {
		info, _ := rc.ClusterInfo(ctx).Result()
		return strings.Contains(info, "cluster_state:ok")
	})
	t.Logf("cluster ready after %v", time.Since(start))
	url := "redis://" + srv.Addr() + "?cluster=true"
	mk := func() *Cache[*verdict] {
		c, err := New(Config{Redis: &RedisConfig{URL: url, Namespace: "cl"}}, JSONCodec[*verdict]{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	a, b := mk(), mk()
	t.Logf("caches up after %v", time.Since(start))
	keys := []Key{plain.Key("c1"), plain.Key("c2"), plain.Key("c3")}
	for _, k := range keys {
		a.Set(ctx, k, &verdict{Sub: "lee"}, time.Minute)
		if v, ok := b.Get(ctx, k); !ok || v.Sub != "lee" {
			t.Fatal("cluster shared tier does not work")
		}
	}
	n, err := a.DeleteFingerprint(ctx, keys[0].Fingerprint())
	if err != nil || n != 1 {
		t.Fatalf("DeleteFingerprint on cluster = %d, %v", n, err)
	}
	waitFor(t, time.Second, "cluster eviction to reach B", func() bool { return !inMemory(b, keys[0]) })
	// Delete is one script that also publishes; on a Cluster its keys must
	// share a slot and its PUBLISH must still reach the other instance.
	if removed, err := a.Delete(ctx, keys[2]); err != nil || !removed {
		t.Fatalf("Delete on cluster = %v, %v", removed, err)
	}
	waitFor(t, time.Second, "cluster Delete to reach B", func() bool { return !inMemory(b, keys[2]) })
	if _, err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "cluster flush to reach A", func() bool { return !inMemory(a, keys[1]) })
	// Only the evictions' tombstones remain.
	if left, _ := rc.Keys(ctx, "cl:d:*").Result(); len(left) != 0 {
		t.Fatalf("%d decisions left in Redis after Flush", len(left))
	}
}

// Peek then Load, the validator's sequence, counts each lookup once and asks
// Redis once per miss (Get then Load counted every miss twice).
func TestPeekThenLoadCountsEachLookupOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := startRedis(t)
	a, b, _, ob := fleet(t, srv, "peek")
	k := plain.Key("peek")
	load := func(sub string, calls *int) func(context.Context) (*verdict, time.Duration, error) {
		return func(context.Context) (*verdict, time.Duration, error) {
			*calls++
			return &verdict{Active: true, Sub: sub}, time.Minute, nil
		}
	}
	var calls int
	if _, _, err := a.Load(ctx, k, load("pia", &calls)); err != nil || calls != 1 {
		t.Fatalf("A: err %v, loader calls %d", err, calls)
	}

	if _, ok := b.Peek(k); ok {
		t.Fatal("B: Peek hit before B ever saw the key")
	}
	if n := ob.req("memory/miss") + ob.req("redis/miss") + ob.req("redis/hit"); n != 0 {
		t.Errorf("Peek miss counted %d lookups, want 0 (the Load that follows counts)", n)
	}
	v, cached, err := b.Load(ctx, k, load("other", &calls))
	if err != nil || !cached || v.Sub != "pia" || calls != 1 {
		t.Fatalf("B: Load = %+v, cached %v, err %v, loader calls %d; want A's value from Redis", v, cached, err, calls)
	}
	if got := [3]int{ob.req("memory/miss"), ob.req("redis/hit"), ob.req("redis/miss")}; got != [3]int{1, 1, 0} {
		t.Errorf("memory misses, redis hits, redis misses = %v, want [1 1 0]", got)
	}
	if v, ok := b.Peek(k); !ok || v.Sub != "pia" || ob.req("memory/hit") != 1 {
		t.Errorf("B: Peek after Load = %+v, %v, memory hits %d; want a counted hit", v, ok, ob.req("memory/hit"))
	}

	fresh := plain.Key("peek-fresh")
	if _, ok := b.Peek(fresh); ok {
		t.Fatal("Peek hit for an unknown key")
	}
	if _, cached, err := b.Load(ctx, fresh, load("fresh", &calls)); err != nil || cached || calls != 2 {
		t.Fatalf("fresh key: cached %v, err %v, loader calls %d", cached, err, calls)
	}
	if got := [2]int{ob.req("memory/miss"), ob.req("redis/miss")}; got != [2]int{2, 1} {
		t.Errorf("after a fresh key: memory misses, redis misses = %v, want [2 1]", got)
	}
}

// An operator evicting a token must learn whether anything was cached for
// it: Delete and Flush report what this call removed from memory or Redis,
// not that they ran.
func TestEvictionsReportWhatTheyRemoved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := startRedis(t)
	a, b, _, _ := fleet(t, srv, "count")
	mem := newMem(t, Config{})

	del := func(t *testing.T, c *Cache[*verdict], k Key, want bool, what string) {
		t.Helper()
		removed, err := c.Delete(ctx, k)
		if err != nil || removed != want {
			t.Errorf("%s: Delete = %v, %v; want %v, nil", what, removed, err, want)
		}
	}
	t.Run("Delete", func(t *testing.T) {
		del(t, mem, plain.Key("never-seen"), false, "memory only, never seen")
		del(t, a, plain.Key("never-seen"), false, "with Redis, never seen")

		k := plain.Key("in-memory")
		mem.Set(ctx, k, &verdict{}, time.Minute)
		del(t, mem, k, true, "memory only, cached")
		del(t, mem, k, false, "memory only, already evicted")

		k = plain.Key("in-both")
		a.Set(ctx, k, &verdict{}, time.Minute)
		del(t, a, k, true, "in A's memory and Redis")
		del(t, a, k, false, "already evicted")

		// B never saw it: only Redis holds it, and that counts.
		k = plain.Key("redis-only")
		a.Set(ctx, k, &verdict{}, time.Minute)
		a.mem.Invalidate(k)
		del(t, b, k, true, "only in Redis")
		del(t, b, k, false, "already evicted from Redis")
	})
	t.Run("Flush", func(t *testing.T) {
		inBoth, redisOnly := plain.Key("flush-both"), plain.Key("flush-redis")
		a.Set(ctx, inBoth, &verdict{}, time.Minute)
		a.Set(ctx, redisOnly, &verdict{}, time.Minute)
		a.mem.Invalidate(redisOnly)
		if n, err := a.Flush(ctx); err != nil || n != 2 {
			t.Errorf("Flush = %d, %v; want 2 (a key in both tiers counts once)", n, err)
		}
		if n, err := a.Flush(ctx); err != nil || n != 0 {
			t.Errorf("second Flush = %d, %v; want 0", n, err)
		}
		mem.Set(ctx, inBoth, &verdict{}, time.Minute)
		if n, err := mem.Flush(ctx); err != nil || n != 1 {
			t.Errorf("memory-only Flush = %d, %v; want 1", n, err)
		}
	})
	t.Run("DeleteFingerprint", func(t *testing.T) {
		if n, err := a.DeleteFingerprint(ctx, plain.Key("never-seen").Fingerprint()); err != nil || n != 0 {
			t.Errorf("DeleteFingerprint of an unknown token = %d, %v; want 0", n, err)
		}
	})
}

// An eviction while Redis is down is bounded by the tier's Timeout, not by
// one admin deadline per command, and still reports that the fleet may not
// have heard. This holds both before the breaker has noticed the outage
// (the call runs into the dead server) and after (it is not attempted).
func TestEvictionWithRedisDownIsBoundedByTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := startRedis(t)
	const timeout = 50 * time.Millisecond
	a, err := New(Config{
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
		Redis:  &RedisConfig{URL: srv.URL(), Namespace: "down", Timeout: timeout},
	}, JSONCodec[*verdict]{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	keys := []Key{plain.Key("down-1"), plain.Key("down-2"), plain.Key("down-3")}
	for _, k := range keys {
		a.Set(ctx, k, &verdict{}, time.Minute)
	}
	srv.Kill()

	timed := func(t *testing.T, what string, bound time.Duration, evict func() error) {
		t.Helper()
		start := time.Now()
		err := evict()
		el := time.Since(start)
		t.Logf("%s with Redis down: %v (%v)", what, el, err)
		if err == nil {
			t.Errorf("%s with Redis down reported success", what)
		}
		if el > bound {
			t.Errorf("%s with Redis down took %v, want < %v (redis timeout %v)", what, el, bound, timeout)
		}
	}
	// DeleteFingerprint and Flush start with their tombstone, a call
	// bounded by the timeout too, and stop when it finds Redis unreachable.
	const bound = 10 * timeout
	t.Run("breaker closed", func(t *testing.T) {
		timed(t, "Delete", bound, func() error {
			removed, err := a.Delete(ctx, keys[0])
			if !removed || inMemory(a, keys[0]) {
				t.Error("Delete with Redis down did not evict locally")
			}
			return err
		})
		timed(t, "DeleteFingerprint", bound, func() error {
			n, err := a.DeleteFingerprint(ctx, keys[1].Fingerprint())
			if n != 1 || inMemory(a, keys[1]) {
				t.Errorf("DeleteFingerprint with Redis down evicted %d locally, want 1", n)
			}
			return err
		})
		timed(t, "Flush", bound, func() error {
			n, err := a.Flush(ctx)
			if n != 1 || inMemory(a, keys[2]) {
				t.Errorf("Flush with Redis down evicted %d locally, want 1", n)
			}
			return err
		})
	})
	t.Run("breaker open", func(t *testing.T) {
		waitFor(t, 10*time.Second, "the breaker to open", func() bool {
			a.Get(ctx, plain.Key("probe"))
			return !a.RedisHealthy()
		})
		timed(t, "Delete", bound, func() error { _, err := a.Delete(ctx, keys[0]); return err })
		timed(t, "DeleteFingerprint", bound, func() error { _, err := a.DeleteFingerprint(ctx, keys[1].Fingerprint()); return err })
		timed(t, "Flush", bound, func() error { _, err := a.Flush(ctx); return err })
	})
}

// An instance whose load finishes just after an eviction, before the
// eviction's message reaches it, must not write the evicted decision back
// to Redis for the whole fleet. C never hears evictions here, and its loader
// runs A's eviction before returning, so C's write comes strictly after the
// eviction: the tombstone the eviction left must refuse it, until the
// tombstone expires.
func TestTombstoneRefusesWriteBackAfterEviction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := startRedis(t)
	rc := rawClient(t, srv)
	// Longer than the loads below (a few milliseconds), short enough to
	// wait for its expiry.
	const tombstoneTTL = 500 * time.Millisecond
	cfg := RedisConfig{URL: srv.URL(), Namespace: "wb", TombstoneTTL: tombstoneTTL}
	mk := func(name string, rcfg *RedisConfig) *Cache[*verdict] {
		c, err := New(Config{
			Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(name),
			Redis:  rcfg,
		}, JSONCodec[*verdict]{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	a, c := mk("A", &cfg), mk("C", withoutFleetEvictions(cfg))

	for _, tc := range []struct {
		name  string
		evict func(k Key) error
	}{
		{"Delete", func(k Key) error { _, err := a.Delete(ctx, k); return err }},
		{"DeleteFingerprint", func(k Key) error { _, err := a.DeleteFingerprint(ctx, k.Fingerprint()); return err }},
		{"Flush", func(Key) error { _, err := a.Flush(ctx); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := plain.Key("write-back-" + tc.name)
			inRedis := func() bool {
				n, err := rc.Exists(ctx, decisionKey("wb", k)).Result()
				if err != nil {
					t.Fatal(err)
				}
				return n == 1
			}
			v, cached, err := c.Load(ctx, k, func(context.Context) (*verdict, time.Duration, error) {
				if err := tc.evict(k); err != nil {
					t.Errorf("eviction: %v", err)
				}
				return &verdict{Active: true, Sub: "revoked"}, time.Minute, nil
			})
			if err != nil || cached || v.Sub != "revoked" {
				t.Fatalf("C.Load = %+v, cached %v, err %v; a refused write must not fail the load", v, cached, err)
			}
			if inRedis() {
				t.Fatal("C wrote the decision back to Redis after it was evicted")
			}
			// A direct Set (the stale_grace revalidation path) is refused too.
			c.Set(ctx, k, &verdict{Active: true, Sub: "revoked"}, time.Minute)
			if inRedis() {
				t.Fatal("C's Set wrote the decision back to Redis after it was evicted")
			}

			// Once the tombstone is gone, the key is an ordinary key again.
			waitFor(t, 10*tombstoneTTL, "the tombstone to expire", func() bool {
				n, err := rc.Exists(ctx, c.rt.tombstone(k), c.rt.fpTombstone(k.Fingerprint()), c.rt.flushTomb).Result()
				return err == nil && n == 0
			})
			c.mem.Invalidate(k)
			if _, _, err := c.Load(ctx, k, func(context.Context) (*verdict, time.Duration, error) {
				return &verdict{Active: true, Sub: "fresh"}, time.Minute, nil
			}); err != nil {
				t.Fatal(err)
			}
			if !inRedis() {
				t.Fatal("a fresh write after the tombstone expired did not reach Redis")
			}
		})
	}
}
