package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
)

// Tunables of the shared tier. They are variables, not constants, only so
// that tests can shorten them.
var (
	// breakerFailures consecutive failed hot-path calls open the breaker:
	// one slow or refused call is noise, three in a row is an outage.
	breakerFailures uint32 = 3
	// breakerCooldown is how long Redis is skipped once the breaker is open
	// before a single probe call is let through (half-open).
	breakerCooldown = 2 * time.Second
	// errorLogEvery rate-limits the warning logged on Redis errors, so that
	// an outage under load produces a line every few seconds, not a flood.
	errorLogEvery = 10 * time.Second
	// startupWait bounds how long New waits for Redis to answer and for the
	// eviction subscription to be confirmed. Only startup pays it.
	startupWait = time.Second
	// minAdminTimeout is the lower bound of the per-call deadline of the
	// SCAN and batch UNLINK calls of DeleteFingerprint and Flush. A SCAN of
	// a large keyspace may legitimately take longer than a hot-path call,
	// and those operations are not on the request path.
	minAdminTimeout = time.Second
	// scanBatch is the SCAN COUNT hint for fingerprint eviction and flush.
	scanBatch int64 = 500
	// pubsubHealthCheck: go-redis pings an idle subscription this often and
	// reconnects when the ping fails, which bounds how long a silently dead
	// subscription connection (no RST, e.g. a network partition) goes unnoticed.
	pubsubHealthCheck = 2 * time.Second
	pubsubPingTimeout = time.Second
	// pubsubReconnectTimeout bounds one reconnect attempt of the health
	// check; go-redis holds the PubSub lock meanwhile, so it also bounds how
	// long Close can wait during a network partition.
	pubsubReconnectTimeout = 2 * time.Second
	// defaultDialTimeout replaces go-redis's 5 s for connections dialled in
	// the background (Pub/Sub, pool probes), where nothing else bounds them;
	// request-path dials are bounded by RedisConfig.Timeout anyway. A
	// dial_timeout URL parameter overrides it.
	defaultDialTimeout = time.Second
)

// go-redis reports some trouble (its pool's failed dials, dropped Pub/Sub
// connections) through a process-global logger that writes plain-text lines
// to stderr, in the middle of Caddy's structured logs and once per failed
// dial burst for as long as Redis is down. The cache reports the same outage
// itself (a rate-limited warning, the breaker's state changes, the
// redis_errors counter), so go-redis's lines are routed to the debug level
// of the most recently created tier's logger instead.
var (
	clientLoggerOnce sync.Once
	clientLogger     atomic.Pointer[zap.Logger]
)

type goRedisLogger struct{}

func (goRedisLogger) Printf(_ context.Context, format string, v ...any) {
	l := clientLogger.Load()
	if l == nil {
		return
	}
	if ce := l.Check(zap.DebugLevel, "redis client"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, v...)))
	}
}

// errSkipped reports that a hot-path Redis call was not made (breaker open,
// cache closed, caller already gone). Callers treat it as a miss.
var errSkipped = errors.New("cache: redis tier skipped")

// errCallerGone marks a failure caused by the caller's own context ending;
// it says nothing about Redis health, so the breaker ignores it.
var errCallerGone = errors.New("cache: caller context ended")

// redisTier is the shared tier. It is not generic: it moves bytes, and the
// generic Cache does the encoding.
type redisTier struct {
	client       redis.UniversalClient
	keyPrefix    string // "<ns>:d:"
	tombPrefix   string // "<ns>:t:"
	fpTombPrefix string // "<ns>:tf:"
	flushTomb    string // "<ns>:tn"; "" on a Cluster (see the package doc)
	matchAll     string // SCAN pattern for every decision key of the namespace
	channel      string // "<ns>:evict"
	timeout      time.Duration
	tombstoneTTL time.Duration
	breaker      *gobreaker.TwoStepCircuitBreaker[struct{}]
	obs          Observer
	log          *zap.Logger
	// id tags our own eviction messages so that we can skip them: they were
	// already applied locally, and re-applying them later could evict a
	// value cached after the eviction.
	id string
	// noSubscribe: never hear the fleet's evictions (tests only).
	noSubscribe bool

	pubsub *redis.PubSub
	wg     sync.WaitGroup
	closed atomic.Bool

	lastLog    atomic.Int64 // unix nanos of the last logged error
	suppressed atomic.Int64 // errors not logged since then
}

// CheckRedisURL reports whether raw is one of the URL forms documented on
// RedisConfig.URL, with the rules New applies, and without connecting: for
// a config check. Errors never quote the URL (it may hold a password).
func CheckRedisURL(raw string) error {
	c, err := newRedisClient(raw)
	if err != nil {
		return err
	}
	// go-redis clients connect lazily: nothing was dialled.
	return c.Close()
}

// newRedisClient builds a client from the URL forms documented on
// RedisConfig.URL.
func newRedisClient(raw string) (redis.UniversalClient, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse errors quote the input, which may hold a password.
		return nil, errors.New("cache: redis URL does not parse")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix" {
		return nil, errors.New("cache: redis URL: not a redis://, rediss:// or unix:// URL")
	}
	q := u.Query()
	switch {
	case q.Has("master_name"):
		opt, err := redis.ParseFailoverURL(raw)
		if err != nil {
			return nil, redactErr(err)
		}
		clientDefaults{&opt.ContextTimeoutEnabled, &opt.DialTimeout, &opt.ClientName, &opt.PipelinePoolSize}.apply()
		return redis.NewFailoverClient(opt), nil
	case q.Has("addr") || q.Has("cluster"):
		if q.Has("cluster") {
			// Our own switch; go-redis rejects parameters it does not know.
			if v := q.Get("cluster"); v != "true" && v != "1" {
				return nil, fmt.Errorf("cache: redis URL: cluster=%q, want cluster=true", v)
			}
			q.Del("cluster")
			u.RawQuery = q.Encode()
		}
		opt, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, redactErr(err)
		}
		// A Cluster client creates no pipeline pool unless a pipeline buffer
		// size is set, so there is none to turn off.
		clientDefaults{&opt.ContextTimeoutEnabled, &opt.DialTimeout, &opt.ClientName, nil}.apply()
		return redis.NewClusterClient(opt), nil
	default:
		opt, err := redis.ParseURL(raw)
		if err != nil {
			return nil, redactErr(err)
		}
		clientDefaults{&opt.ContextTimeoutEnabled, &opt.DialTimeout, &opt.ClientName, &opt.PipelinePoolSize}.apply()
		return redis.NewClient(opt), nil
	}
}

// clientDefaults points at the settings of one of go-redis's option types
// (Options, FailoverOptions, ClusterOptions: each topology has its own
// type, and its own URL parser) that every topology gets the same way.
type clientDefaults struct {
	contextTimeout *bool
	dialTimeout    *time.Duration
	clientName     *string
	pipelinePool   *int // nil: the topology has no pipeline pool to size
}

// apply sets what the URL left unset.
func (d clientDefaults) apply() {
	// Without this go-redis ignores context deadlines for socket I/O and
	// uses its 5 s read/write timeouts: our per-call bound would not hold.
	*d.contextTimeout = true
	if *d.dialTimeout == 0 {
		*d.dialTimeout = defaultDialTimeout
	}
	if *d.clientName == "" {
		*d.clientName = "tokengate"
	}
	// Our only pipeline is a two-command GET+PTTL; a second pool with
	// 128 KiB buffers per connection buys nothing for it.
	if d.pipelinePool != nil && *d.pipelinePool == 0 {
		*d.pipelinePool = -1
	}
}

// redactErr wraps a go-redis URL error. The URL was already parsed above,
// so these errors name a parameter, never the whole URL with its password.
func redactErr(err error) error {
	return fmt.Errorf("cache: redis URL: %w", err)
}

func newRedisTier(cfg *RedisConfig, obs Observer, log *zap.Logger) (*redisTier, error) {
	client, err := newRedisClient(cfg.URL)
	if err != nil {
		return nil, err
	}
	ns := cfg.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	if strings.ContainsAny(ns, "{}") {
		_ = client.Close()
		// A brace in the namespace would become the Cluster hash tag of
		// every key, or split a decision's slot from its tombstones'.
		return nil, errors.New("cache: Namespace must not contain '{' or '}'")
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultRedisTimeout
	}
	tombstoneTTL := cfg.TombstoneTTL
	if tombstoneTTL <= 0 {
		tombstoneTTL = DefaultTombstoneTTL
	}
	// The scripts pass it in whole milliseconds, and PX 0 is an error.
	tombstoneTTL = max(tombstoneTTL, time.Millisecond)
	flushTomb := ns + ":tn"
	if _, cluster := client.(*redis.ClusterClient); cluster {
		flushTomb = ""
	}
	clientLogger.Store(log)
	clientLoggerOnce.Do(func() { redis.SetLogger(goRedisLogger{}) })
	var id [8]byte
	_, _ = rand.Read(id[:])
	r := &redisTier{
		client:       client,
		keyPrefix:    ns + ":d:",
		tombPrefix:   ns + ":t:",
		fpTombPrefix: ns + ":tf:",
		flushTomb:    flushTomb,
		matchAll:     escapeGlob(ns+":d:") + "*",
		channel:      ns + ":evict",
		timeout:      timeout,
		tombstoneTTL: tombstoneTTL,
		obs:          obs,
		log:          log,
		id:           hex.EncodeToString(id[:]),
		noSubscribe:  cfg.noSubscribe,
	}
	r.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "redis",
		MaxRequests: 1,
		Timeout:     breakerCooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= breakerFailures
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errCallerGone) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			// half-open -> open repeats every cooldown during an outage;
			// only the edges an operator cares about are logged.
			switch {
			case from == gobreaker.StateClosed && to == gobreaker.StateOpen:
				r.log.Warn("redis tier unavailable; serving from memory and re-checking periodically",
					zap.Duration("retry_every", breakerCooldown))
			case to == gobreaker.StateClosed:
				r.log.Info("redis tier available again")
			}
		},
	})
	return r, nil
}

// start checks reachability and subscribes to the eviction channel. onMsg
// gets foreign eviction payloads; onSubscribed runs on every confirmed
// (re)subscription. Neither failure is fatal: go-redis keeps reconnecting.
func (r *redisTier) start(onMsg func(string), onSubscribed func(first bool)) {
	ctx, cancel := context.WithTimeout(context.Background(), startupWait)
	defer cancel()
	err := r.client.Ping(ctx).Err()
	reachable := err == nil
	if !reachable {
		r.log.Warn("redis tier not reachable at startup; continuing with the memory tier until it answers",
			zap.Error(err))
	}
	if r.noSubscribe {
		return
	}

	r.pubsub = r.client.Subscribe(ctx, r.channel)
	// ChannelWithSubscriptions (not Channel) because the subscription
	// confirmations tell us when go-redis has reconnected after an outage.
	ch := r.pubsub.ChannelWithSubscriptions(
		redis.WithChannelSize(1024),
		redis.WithChannelHealthCheckInterval(pubsubHealthCheck),
		redis.WithChannelPingTimeout(pubsubPingTimeout),
		redis.WithChannelReconnectTimeout(pubsubReconnectTimeout),
	)
	ready := make(chan struct{})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		first := true
		for m := range ch { // closed by PubSub.Close
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					onSubscribed(first)
					if first {
						close(ready)
						first = false
					}
				}
			case *redis.Message:
				payload, origin, _ := strings.Cut(m.Payload, " ")
				if origin == r.id {
					continue
				}
				onMsg(payload)
			}
		}
	}()
	if reachable {
		// Without this wait an eviction published right after New returns
		// could reach Redis before our SUBSCRIBE and be missed.
		select {
		case <-ready:
		case <-ctx.Done():
			r.log.Warn("eviction channel subscription not confirmed yet; go-redis keeps retrying")
		}
	}
}

func (r *redisTier) close() error {
	if r.closed.Swap(true) {
		return nil
	}
	// A closed tier's logger may belong to an unloaded config.
	clientLogger.CompareAndSwap(r.log, nil)
	var err error
	if r.pubsub != nil {
		err = r.pubsub.Close()
	}
	r.wg.Wait()
	return errors.Join(err, r.client.Close())
}

func (r *redisTier) healthy() bool {
	return !r.closed.Load() && r.breaker.State() == gobreaker.StateClosed
}

// tagged builds "<prefix>{<fingerprint>}<rest of the key in hex>". The
// braces are a Redis Cluster hash tag: a decision and its tombstones share
// one slot, so that the script writing the one after checking the others
// may touch them all.
func tagged(prefix string, k Key) string {
	var h [2 * len(Key{})]byte
	hex.Encode(h[:], k[:])
	var b strings.Builder
	b.Grow(len(prefix) + 2 + len(h))
	b.WriteString(prefix)
	b.WriteByte('{')
	b.Write(h[:fingerprintLen])
	b.WriteByte('}')
	b.Write(h[fingerprintLen:])
	return b.String()
}

func (r *redisTier) key(k Key) string       { return tagged(r.keyPrefix, k) }
func (r *redisTier) tombstone(k Key) string { return tagged(r.tombPrefix, k) }

func (r *redisTier) fpTombstone(fpHex string) string {
	return r.fpTombPrefix + "{" + fpHex + "}"
}

// fpPattern matches the decision keys of one fingerprint.
func (r *redisTier) fpPattern(fpHex string) string {
	return escapeGlob(r.keyPrefix+"{"+fpHex+"}") + "*"
}

// parseKey reverses key, for the keys a SCAN returns.
func (r *redisTier) parseKey(s string) (Key, bool) {
	rest, ok := strings.CutPrefix(s, r.keyPrefix)
	if !ok || len(rest) != 2*len(Key{})+2 || rest[0] != '{' || rest[fingerprintLen+1] != '}' {
		return Key{}, false
	}
	k, err := ParseKey(rest[1:fingerprintLen+1] + rest[fingerprintLen+2:])
	return k, err == nil
}

// writeKeys are the keys of setScript: the decision, then every tombstone
// that forbids writing it.
func (r *redisTier) writeKeys(k Key) []string {
	keys := []string{r.key(k), r.tombstone(k), r.fpTombstone(k.Fingerprint())}
	if r.flushTomb != "" {
		keys = append(keys, r.flushTomb)
	}
	return keys
}

// fail counts and (rate-limited) logs a Redis error.
func (r *redisTier) fail(op string, err error) {
	r.obs.RedisError(op)
	now := time.Now().UnixNano()
	last := r.lastLog.Load()
	if now-last < int64(errorLogEvery) || !r.lastLog.CompareAndSwap(last, now) {
		r.suppressed.Add(1)
		return
	}
	r.log.Warn("redis tier error; continuing without it",
		zap.String("op", op), zap.Error(err),
		zap.Int64("suppressed_since_last", r.suppressed.Swap(0)))
}

// guard runs a hot-path call through the breaker with the per-call timeout.
// Errors are counted and logged here; the caller only learns "no answer".
func (r *redisTier) guard(ctx context.Context, op string, fn func(context.Context) error) error {
	if r.closed.Load() || ctx.Err() != nil {
		return errSkipped
	}
	done, err := r.breaker.Allow()
	if err != nil {
		return errSkipped
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	err = fn(cctx)
	cancel()
	switch {
	case err == nil:
		done(nil)
	case ctx.Err() != nil:
		done(errCallerGone)
	default:
		done(err)
		r.fail(op, err)
	}
	return err
}

// get returns the stored bytes and the key's remaining lifetime.
func (r *redisTier) get(ctx context.Context, k Key) (data []byte, ttl time.Duration, ok bool) {
	key := r.key(k)
	err := r.guard(ctx, "get", func(ctx context.Context) error {
		var getCmd *redis.StringCmd
		var ttlCmd *redis.DurationCmd
		// One round trip: the value, and how long it has left, so that the
		// memory copy never outlives the shared one.
		_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			getCmd = p.Get(ctx, key)
			ttlCmd = p.PTTL(ctx, key)
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		b, gerr := getCmd.Bytes()
		if gerr != nil {
			return nil // redis.Nil: a miss is a healthy answer
		}
		// PTTL is -2 (gone meanwhile) or -1 (no expiry, not written by us):
		// both are misses, the latter because we cannot bound its lifetime.
		if d := ttlCmd.Val(); d > 0 {
			data, ttl, ok = b, d, true
		}
		return nil
	})
	if err == nil {
		r.obs.CacheRequest("redis", ok)
	}
	return data, ttl, ok
}

// setScript writes a decision unless an eviction's tombstone for it still
// exists. An instance whose load finishes just after an eviction, before
// the eviction's message reaches it, would otherwise write the revoked
// decision back for the whole fleet; checking and writing in one script
// leaves no gap between the two.
//
// KEYS[1] the decision, KEYS[2..] its tombstones; ARGV[1] the value, ARGV[2]
// its lifetime in milliseconds. Returns 1 if written, 0 if refused.
var setScript = redis.NewScript(`
for i = 2, #KEYS do
	if redis.call('EXISTS', KEYS[i]) == 1 then
		return 0
	end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

// set writes the decision unless a tombstone forbids it; a refusal is a
// healthy answer, not an error.
func (r *redisTier) set(ctx context.Context, k Key, data []byte, ttl time.Duration) {
	keys := r.writeKeys(k)
	ms := max(ttl.Milliseconds(), 1) // PX 0 is an error; go-redis rounds up the same way
	_ = r.guard(ctx, "set", func(ctx context.Context) error {
		return setScript.Run(ctx, r.client, keys, data, ms).Err()
	})
}
