// Package cache is tokengate's decision cache: a bounded in-memory tier
// (otter), an optional shared Redis tier for a fleet of gateways, request
// coalescing, and fleet-wide eviction over Redis Pub/Sub.
//
// Keys are digests of tokens (see Keyer); the raw token is never a key, never
// stored and never logged.
//
// Redis is an accelerator, never a dependency: every Redis call on the
// request path is bounded by RedisConfig.Timeout, failures open a circuit
// breaker that skips Redis for a while, and Get/Set/Load never report Redis
// errors. Only the admin operations (Delete, DeleteFingerprint, Flush) return
// them, after applying the eviction to the local memory tier regardless, so
// that an operator knows when an eviction may not have reached the fleet.
//
// Fleet eviction: admin operations publish on "<ns>:evict"; every Cache
// subscribes and applies foreign messages to its memory tier. go-redis
// reconnects and resubscribes on its own after Redis restarts; because
// messages published while a subscriber was disconnected are lost, a Cache
// flushes its memory tier whenever its subscription is re-established.
// Messages are "k:<64 hex>", "f:<16 hex>" or "flush", followed by a space and
// the sender's instance id; a message with no id (for example
// `redis-cli PUBLISH <namespace>:evict flush`) is applied by every instance.
//
// Redis keys: a decision is "<ns>:d:{<fp>}<rest>", where <fp> is the key's
// Fingerprint (16 hex) and <rest> the remaining 48 hex of the key. The braces
// are a Redis Cluster hash tag, so that a decision and its tombstones share a
// slot; the namespace therefore must not contain braces.
//
// Tombstones: an instance whose load finishes just after an eviction, but
// before the eviction's message reaches it, would write the evicted decision
// back to Redis, and from there to the whole fleet. So an eviction first
// writes a tombstone that lives TombstoneTTL: "<ns>:t:{<fp>}<rest>" for a
// key (in the same script as the UNLINK and the PUBLISH), "<ns>:tf:{<fp>}"
// for a fingerprint, and "<ns>:tn" for a flush. Decisions are written by a
// script that refuses to write while a tombstone for them exists, checked
// and written atomically in Redis. Guarantee: a load that started before an
// eviction and ends within TombstoneTTL of it never stores its result in
// Redis after the eviction; the cost is that, for TombstoneTTL, decisions
// for the evicted keys (every key, after a flush) are not shared through
// Redis, so each instance asks the authorization server itself. On a Redis
// Cluster no key shares a slot with every decision, so there is no flush
// tombstone: a flush there does not close this race (evictions by key or
// fingerprint do). A tombstone refused because Redis is out of memory under
// noeviction does not fail the eviction: such a Redis refuses decision
// writes too.
package cache

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// Defaults applied by New.
const (
	DefaultMaxEntries   = 10000
	DefaultNamespace    = "tokengate"
	DefaultRedisTimeout = 50 * time.Millisecond
	DefaultTombstoneTTL = 30 * time.Second
)

// Observer receives metrics events. Methods are called on the request path
// and must be cheap and safe for concurrent use.
type Observer interface {
	// CacheRequest reports a lookup in tier "memory" or "redis". A Redis
	// lookup that was skipped or failed is not a request (see RedisError).
	CacheRequest(tier string, hit bool)
	// RedisError reports a failed Redis call; op is "get", "set", "del",
	// "tombstone", "scan" or "publish", or "decode"/"encode" when the Codec
	// failed on a value read from or written to Redis.
	RedisError(op string)
	// Coalesced reports that a Load waited for another caller's load.
	Coalesced()
}

type nopObserver struct{}

func (nopObserver) CacheRequest(string, bool) {}
func (nopObserver) RedisError(string)         {}
func (nopObserver) Coalesced()                {}

// Config configures a Cache.
type Config struct {
	// MaxEntries bounds the memory tier (default DefaultMaxEntries). The
	// bound holds under a spray of unique tokens: otter evicts the entries
	// least likely to be used again.
	MaxEntries int
	// Redis enables the shared tier; nil means memory only.
	Redis *RedisConfig
	// Observer receives metrics events; nil means none.
	Observer Observer
	// Logger receives warnings about the shared tier; nil means none.
	Logger *zap.Logger
}

// RedisConfig configures the shared tier.
type RedisConfig struct {
	// URL selects the server and the client kind:
	//
	//   redis://[user:password@]host[:port][/db][?opt=value...]   single server
	//   rediss://...                                              same, TLS
	//   unix://[user:password@]/path/to/redis.sock[?db=N]         unix socket
	//   redis[s]://[user:pass@]sentinel1:26379[/db]?master_name=mymaster&addr=sentinel2:26379&password=masterpass
	//       Sentinel (failover): host and each addr= are sentinels; the
	//       userinfo authenticates to the sentinels, username=/password=
	//       query parameters to the master.
	//   redis[s]://[user:password@]node1:6379?addr=node2:6379&addr=node3:6379
	//   redis[s]://[user:password@]node1:6379?cluster=true
	//       Redis Cluster: any addr= (or cluster=true with a single seed).
	//
	// Other query parameters are go-redis option names in snake case
	// (dial_timeout, pool_size, max_retries, skip_verify, protocol, ...), as
	// documented for redis.ParseURL, redis.ParseFailoverURL and
	// redis.ParseClusterURL; unknown parameters are an error.
	URL string
	// Namespace prefixes every key and the eviction channel (default
	// DefaultNamespace). Gateways that must not share decisions use
	// different namespaces.
	Namespace string
	// Timeout bounds each Redis call on the request path (default
	// DefaultRedisTimeout): Redis must never make a request slow. It also
	// bounds a whole Delete (one round trip) and the first call (the
	// tombstone) and the last (the PUBLISH) of DeleteFingerprint and Flush;
	// their SCAN and batch UNLINK calls (where a Flush on a Cluster, which
	// has no tombstone, starts) are bounded by max(Timeout, 1s) each. An
	// admin operation fails at once
	// while the breaker is open, and stops at the first call that finds
	// Redis unreachable, so that an eviction during an outage answers in
	// about Timeout rather than in one deadline per command.
	Timeout time.Duration
	// TombstoneTTL is how long an eviction forbids writing the evicted
	// decisions back to Redis (default DefaultTombstoneTTL; see the package
	// doc). It must exceed the longest load, including its wait for a turn:
	// a load that started before the eviction and ends after the tombstone
	// expired can still write the evicted decision back.
	TombstoneTTL time.Duration

	// noSubscribe makes an instance that never hears the fleet's
	// evictions, for tests that must order its Redis writes after another
	// instance's eviction without racing the Pub/Sub message.
	noSubscribe bool
}

// entry is what the memory tier stores: the value and the lifetime otter's
// expiry calculator reads, so that value and TTL are written atomically.
type entry[V any] struct {
	v   V
	ttl time.Duration
}

// Cache is a two-tier decision cache. It is safe for concurrent use. Memory
// hits return the stored value itself, so a pointer V is shared between
// callers and must be treated as immutable.
type Cache[V any] struct {
	mem   *otter.Cache[Key, entry[V]]
	codec Codec[V]
	obs   Observer
	log   *zap.Logger
	rt    *redisTier // nil: memory only
	group singleflight.Group

	// epoch advances on every eviction (local or from the fleet). A load or
	// promotion that started before an eviction must not store its value
	// after it: it may be the very decision the operator just revoked.
	epoch atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// New creates a Cache. codec is needed only with cfg.Redis (JSONCodec works
// for JSON-serialisable values). A Redis tier that is unreachable at startup
// is not an error: the cache starts with the memory tier and picks Redis up
// when it answers.
func New[V any](cfg Config, codec Codec[V]) (*Cache[V], error) {
	if cfg.MaxEntries < 0 {
		return nil, errors.New("cache: MaxEntries must not be negative")
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	c := &Cache[V]{codec: codec, obs: cfg.Observer, log: cfg.Logger}
	if c.obs == nil {
		c.obs = nopObserver{}
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	mem, err := otter.New(&otter.Options[Key, entry[V]]{
		MaximumSize: cfg.MaxEntries,
		// Per-entry lifetime from the value; reads do not extend it: a
		// decision is only good for as long as it was issued for.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[Key, entry[V]]) time.Duration {
			return e.Value.ttl
		}),
		// otter's default logger is slog.Default; keep the cache's own
		// problems in the caller's zap logger.
		Logger: otterLogger{c.log},
		// Run otter's upkeep (draining its buffers, evicting) on the
		// writing goroutine: the default starts a goroutine after writes
		// and wakes another thread for it, which cost a cold request more
		// than the upkeep itself. We register no deletion handlers, so
		// nothing of ours runs under otter's locks.
		Executor: func(upkeep func()) { upkeep() },
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.mem = mem
	if cfg.Redis != nil {
		if codec == nil {
			return nil, errors.New("cache: a Codec is required with Redis")
		}
		rt, err := newRedisTier(cfg.Redis, c.obs, c.log)
		if err != nil {
			mem.StopAllGoroutines()
			return nil, err
		}
		c.rt = rt
		rt.start(c.applyFleet, c.onSubscribed)
	}
	return c, nil
}

// Get returns the cached value: memory first, then Redis (copying a Redis
// hit into memory for the key's remaining lifetime).
func (c *Cache[V]) Get(ctx context.Context, k Key) (V, bool) {
	if e, ok := c.mem.GetIfPresent(k); ok {
		c.obs.CacheRequest("memory", true)
		return e.v, true
	}
	c.obs.CacheRequest("memory", false)
	if c.rt == nil {
		var zero V
		return zero, false
	}
	return c.getRedis(ctx, k, c.epoch.Load())
}

// Peek is the allocation-free fast path to call before Load: it looks in
// the memory tier only and counts a hit, but not a miss, because the Load
// that follows a miss counts it and asks Redis itself. (Get before Load
// would count every miss twice and, with Redis, ask Redis twice.)
func (c *Cache[V]) Peek(k Key) (V, bool) {
	if e, ok := c.mem.GetIfPresent(k); ok {
		c.obs.CacheRequest("memory", true)
		return e.v, true
	}
	var zero V
	return zero, false
}

// Lookup is Peek without counting anything: for a caller that may decide
// not to use what it finds. One that uses it counts the hit (CountHit).
func (c *Cache[V]) Lookup(k Key) (V, bool) {
	if e, ok := c.mem.GetIfPresent(k); ok {
		return e.v, true
	}
	var zero V
	return zero, false
}

// CountHit counts a memory hit found with Lookup and used.
func (c *Cache[V]) CountHit() { c.obs.CacheRequest("memory", true) }

func (c *Cache[V]) getRedis(ctx context.Context, k Key, epoch uint64) (V, bool) {
	var zero V
	data, ttl, ok := c.rt.get(ctx, k)
	if !ok {
		return zero, false
	}
	v, err := c.codec.Unmarshal(data)
	if err != nil {
		// Most likely a value written by an incompatible version sharing
		// the namespace: a miss, and worth a (rate-limited) warning.
		c.rt.fail("decode", err)
		return zero, false
	}
	c.storeMem(k, v, ttl, epoch)
	return v, true
}

// storeMem writes to memory unless an eviction happened since epoch was
// read. The second check closes the race with an eviction that runs between
// the first check and the write: the eviction advances the epoch before it
// invalidates, so either it removes our write or we see its epoch.
func (c *Cache[V]) storeMem(k Key, v V, ttl time.Duration, epoch uint64) bool {
	if c.epoch.Load() != epoch {
		return false
	}
	c.mem.Set(k, entry[V]{v: v, ttl: ttl})
	if c.epoch.Load() != epoch {
		c.mem.Invalidate(k)
		return false
	}
	return true
}

// Set stores v for ttl in memory and Redis. ttl <= 0 stores nothing.
func (c *Cache[V]) Set(ctx context.Context, k Key, v V, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mem.Set(k, entry[V]{v: v, ttl: ttl})
	c.setRedis(ctx, k, v, ttl)
}

// Epoch marks a point in the cache's history of evictions, for SetSince.
func (c *Cache[V]) Epoch() uint64 { return c.epoch.Load() }

// SetSince is Set for a value computed after Epoch returned epoch: it
// stores nothing if an eviction happened since, because the value may be
// the very decision the operator just evicted (Load does the same for the
// values it loads).
func (c *Cache[V]) SetSince(ctx context.Context, k Key, v V, ttl time.Duration, epoch uint64) {
	if ttl > 0 && c.storeMem(k, v, ttl, epoch) {
		c.setRedis(ctx, k, v, ttl)
	}
}

func (c *Cache[V]) setRedis(ctx context.Context, k Key, v V, ttl time.Duration) {
	if c.rt == nil {
		return
	}
	data, err := c.codec.Marshal(v)
	if err != nil {
		c.rt.fail("encode", err)
		return
	}
	c.rt.set(ctx, k, data, ttl)
}

type loadResult[V any] struct {
	v      V
	cached bool
}

// Load returns the cached value, or calls load once across concurrent
// callers of the same key and caches its result for the TTL it returns
// (ttl <= 0: returned but not cached). Load errors are not cached; every
// waiter gets them. cached reports whether the value came from a tier
// rather than from load.
//
// load runs with the first caller's context values but without its
// cancellation, so one client hanging up does not fail everyone waiting for
// the same token; load must bound its own duration. A caller whose context
// ends stops waiting and gets ctx.Err(). A panic in load is returned as an
// error to every waiter instead of crashing the process.
func (c *Cache[V]) Load(ctx context.Context, k Key, load func(ctx context.Context) (V, time.Duration, error)) (v V, cached bool, err error) {
	if e, ok := c.mem.GetIfPresent(k); ok {
		c.obs.CacheRequest("memory", true)
		return e.v, true, nil
	}
	c.obs.CacheRequest("memory", false)
	if err := ctx.Err(); err != nil {
		var zero V
		return zero, false, err
	}

	led := false // set only if our closure is the one singleflight runs
	lctx := context.WithoutCancel(ctx)
	ch := c.group.DoChan(string(k[:]), func() (any, error) {
		led = true
		return c.lead(lctx, k, load)
	})
	select {
	case r := <-ch:
		// The channel receive orders the leader's write of led before this read.
		if !led {
			c.obs.Coalesced()
		}
		if r.Err != nil {
			var zero V
			return zero, false, r.Err
		}
		res := r.Val.(loadResult[V])
		return res.v, res.cached, nil
	case <-ctx.Done():
		var zero V
		return zero, false, ctx.Err()
	}
}

// LoadLocal is Load for a value that is cheaper to compute than a Redis
// round trip, with no I/O and a bounded duration (a local JWT
// verification): on a memory miss, load runs in the caller's goroutine,
// with no Redis read and no hand-off to another goroutine, and its result
// is kept in memory only. Concurrent first callers for one key may each
// run load, but all of them get the value stored first (one decision per
// token, whatever the burst), at no cost to the callers that meet no one.
// An eviction during load keeps the result out of the cache, as in Load.
func (c *Cache[V]) LoadLocal(k Key, load func() (V, time.Duration, error)) (V, error) {
	if e, ok := c.mem.GetIfPresent(k); ok {
		c.obs.CacheRequest("memory", true)
		return e.v, nil
	}
	c.obs.CacheRequest("memory", false)
	epoch := c.epoch.Load()
	v, ttl, err := load()
	if err != nil || ttl <= 0 || c.epoch.Load() != epoch {
		return v, err
	}
	if e, stored := c.mem.SetIfAbsent(k, entry[V]{v: v, ttl: ttl}); !stored {
		c.obs.Coalesced()
		return e.v, nil
	}
	if c.epoch.Load() != epoch {
		// An eviction ran between the check above and the write: it may
		// not have seen our entry.
		c.mem.Invalidate(k)
	}
	return v, nil
}

// lead is the single in-flight load of a key: Redis first, then the loader.
func (c *Cache[V]) lead(ctx context.Context, k Key, load func(context.Context) (V, time.Duration, error)) (res loadResult[V], err error) {
	// singleflight re-panics a panicking function on a fresh goroutine,
	// which no recover in the caller's stack (e.g. Caddy's) can catch.
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("cache loader panicked", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			err = fmt.Errorf("cache: loader panicked: %v", p)
		}
	}()
	epoch := c.epoch.Load()
	// Another caller may have finished a load between our memory miss and
	// our turn as leader; don't load twice.
	if e, ok := c.mem.GetIfPresent(k); ok {
		return loadResult[V]{v: e.v, cached: true}, nil
	}
	if c.rt != nil {
		if v, ok := c.getRedis(ctx, k, epoch); ok {
			return loadResult[V]{v: v, cached: true}, nil
		}
	}
	v, ttl, err := load(ctx)
	if err != nil {
		return res, err
	}
	if ttl > 0 && c.storeMem(k, v, ttl, epoch) {
		c.setRedis(ctx, k, v, ttl)
	}
	return loadResult[V]{v: v}, nil
}

// Delete evicts k from memory, Redis and, via Pub/Sub, every other
// instance's memory. It reports whether this call removed an entry from
// this instance's memory or from Redis: an operator evicting a token must be
// able to tell a revoked decision from a token the fleet never cached. Other
// instances' memory copies are evicted too, but not counted (Pub/Sub does
// not answer). The local eviction always happens; an error means the shared
// tier or the fleet may still hold the key.
func (c *Cache[V]) Delete(ctx context.Context, k Key) (removed bool, err error) {
	removed = c.evictLocal(k)
	if c.rt == nil {
		return removed, nil
	}
	inRedis, err := c.rt.evictKey(ctx, k)
	return removed || inRedis, err
}

// evictLocal reports whether memory held a live entry for k.
func (c *Cache[V]) evictLocal(k Key) bool {
	c.epoch.Add(1)
	_, ok := c.mem.Invalidate(k)
	return ok
}

// DeleteFingerprint evicts every key whose Fingerprint() is fp (16 hex
// characters), in memory, in Redis and across the fleet, and returns how
// many distinct keys this call found in memory or Redis. As with Delete,
// the local eviction happens even when Redis fails.
func (c *Cache[V]) DeleteFingerprint(ctx context.Context, fp string) (int, error) {
	b, err := parseFingerprint(fp)
	if err != nil {
		return 0, err
	}
	found := c.evictFingerprintLocal(b)
	if c.rt == nil {
		return len(found), nil
	}
	err = c.rt.evictFingerprint(ctx, hex.EncodeToString(b[:]), func(k Key) { found[k] = struct{}{} })
	return len(found), err
}

func (c *Cache[V]) evictFingerprintLocal(fp [fingerprintLen / 2]byte) map[Key]struct{} {
	c.epoch.Add(1)
	found := make(map[Key]struct{})
	// Collected first, then invalidated: a linear scan, acceptable for a
	// rare admin operation even with a million entries.
	for k := range c.mem.Keys() {
		if k.hasFingerprint(fp) {
			found[k] = struct{}{}
		}
	}
	for k := range found {
		c.mem.Invalidate(k)
	}
	return found
}

// Flush evicts everything: memory, the Redis namespace, and the fleet. It
// returns how many distinct keys this call found in memory or Redis, as
// DeleteFingerprint does.
func (c *Cache[V]) Flush(ctx context.Context) (int, error) {
	// Counted before the flush: InvalidateAll does not say what it dropped.
	// Collecting the keys costs a linear scan, fine for a rare admin call.
	found := make(map[Key]struct{}, c.mem.EstimatedSize())
	for k := range c.mem.Keys() {
		found[k] = struct{}{}
	}
	c.flushLocal()
	if c.rt == nil {
		return len(found), nil
	}
	err := c.rt.flush(ctx, func(k Key) { found[k] = struct{}{} })
	return len(found), err
}

func (c *Cache[V]) flushLocal() {
	c.epoch.Add(1)
	c.mem.InvalidateAll()
}

// applyFleet applies an eviction message from another instance.
func (c *Cache[V]) applyFleet(payload string) {
	switch {
	case payload == "flush":
		c.flushLocal()
	case len(payload) > 2 && payload[:2] == "k:":
		if k, err := ParseKey(payload[2:]); err == nil {
			c.evictLocal(k)
			return
		}
		c.log.Warn("ignoring malformed eviction message", zap.String("payload", payload))
	case len(payload) > 2 && payload[:2] == "f:":
		if fp, err := parseFingerprint(payload[2:]); err == nil {
			c.evictFingerprintLocal(fp)
			return
		}
		c.log.Warn("ignoring malformed eviction message", zap.String("payload", payload))
	default:
		c.log.Warn("ignoring malformed eviction message", zap.String("payload", payload))
	}
}

// onSubscribed runs on every confirmed (re)subscription. Evictions published
// while we were disconnected are lost, so after a reconnect the memory tier
// may hold revoked decisions: dropping it is the only safe answer. (The first
// subscription happens before New returns, when memory is still empty.)
func (c *Cache[V]) onSubscribed(first bool) {
	c.flushLocal()
	if !first {
		c.log.Info("eviction channel resubscribed after a disconnect; memory tier flushed because evictions may have been missed")
	}
}

// Len returns the approximate number of entries in the memory tier.
func (c *Cache[V]) Len() int { return c.mem.EstimatedSize() }

// RedisHealthy reports whether the shared tier is configured and in use,
// i.e. its circuit breaker is closed. After an outage it turns true with the
// first successful Redis call after the breaker's cool-down.
func (c *Cache[V]) RedisHealthy() bool { return c.rt != nil && c.rt.healthy() }

// Close stops the cache's goroutines and closes the Redis client. The
// memory tier keeps answering; Redis is no longer used.
func (c *Cache[V]) Close() error {
	c.closeOnce.Do(func() {
		if c.rt != nil {
			c.closeErr = c.rt.close()
		}
		c.mem.StopAllGoroutines()
	})
	return c.closeErr
}

// otterLogger routes otter's own warnings (e.g. a failed refresh, which we
// never configure) to zap.
type otterLogger struct{ l *zap.Logger }

func (o otterLogger) Warn(_ context.Context, msg string, err error) {
	o.l.Warn("otter: "+msg, zap.Error(err))
}

func (o otterLogger) Error(_ context.Context, msg string, err error) {
	o.l.Error("otter: "+msg, zap.Error(err))
}
