package cache

// The shared tier's admin operations: evictions by key, by fingerprint and
// of a whole namespace, with their tombstones and fleet messages, each
// bounded as RedisConfig.Timeout says. The request path's reads and writes
// are in redis.go.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

func (r *redisTier) adminTimeout() time.Duration {
	return max(r.timeout, minAdminTimeout)
}

// adminCall makes one call of an admin operation, bounded by d. Unlike
// hot-path calls, admin calls report their errors: an operator must know
// when the fleet may not have heard. They go through the breaker all the
// same: while it is open Redis is known to be down, and failing at once
// beats making the operator wait for a timeout to learn the same thing.
func (r *redisTier) adminCall(ctx context.Context, op string, d time.Duration, fn func(context.Context) error) error {
	if r.closed.Load() {
		return errors.New("cache: closed")
	}
	done, err := r.breaker.Allow()
	if err != nil {
		return fmt.Errorf("cache: redis %s not attempted: the tier is failing and is re-checked every %v: %w", op, breakerCooldown, err)
	}
	cctx, cancel := context.WithTimeout(ctx, d)
	err = fn(cctx)
	cancel()
	switch {
	case err == nil:
		done(nil)
		return nil
	case ctx.Err() != nil:
		done(errCallerGone)
	default:
		done(err)
	}
	r.fail(op, err)
	return fmt.Errorf("cache: redis %s: %w", op, err)
}

// unreachable reports whether err means that Redis did not answer at all
// (refused, timed out, connection lost, breaker open) rather than answered
// with an error. An admin operation stops at such a failure: its remaining
// calls would only wait out their own deadlines to fail the same way.
func unreachable(err error) bool {
	var reply redis.Error
	return err != nil && !errors.As(err, &reply)
}

func (r *redisTier) message(payload string) string { return payload + " " + r.id }

func (r *redisTier) publish(ctx context.Context, payload string) error {
	msg := r.message(payload)
	return r.adminCall(ctx, "publish", r.timeout, func(ctx context.Context) error {
		return r.client.Publish(ctx, r.channel, msg).Err()
	})
}

// evictScript leaves the tombstone, removes the decision and tells the
// fleet in one round trip, so that one deadline bounds the whole eviction,
// and atomically, so that the message cannot overtake the UNLINK: an
// instance that hears it and reloads from Redis must find the key gone.
// (PUBLISH from a script reaches every node of a Cluster like any other.)
// The tombstone is written with pcall: when Redis is out of memory under
// noeviction it refuses the SET, and the eviction itself must still happen.
//
// KEYS[1] the decision, KEYS[2] its tombstone; ARGV[1] the tombstone's
// lifetime in milliseconds, ARGV[2] the channel, ARGV[3] the message.
// Returns {unlinked count} or {unlinked count, tombstone error}.
var evictScript = redis.NewScript(`
local t = redis.pcall('SET', KEYS[2], '1', 'PX', ARGV[1])
local n = redis.call('UNLINK', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
if type(t) == 'table' and t.err then
	return {n, t.err}
end
return {n}`)

// evictKey tombstones and unlinks k and publishes its eviction, reporting
// whether Redis held it. The whole eviction is bounded by the tier's
// Timeout.
func (r *redisTier) evictKey(ctx context.Context, k Key) (bool, error) {
	keys, msg := []string{r.key(k), r.tombstone(k)}, r.message("k:"+k.String())
	var res []any
	err := r.adminCall(ctx, "del", r.timeout, func(ctx context.Context) error {
		var err error
		// Eval, not Run: Run's EVALSHA costs a second round trip whenever
		// the server has not cached the script yet (after every restart).
		res, err = evictScript.Eval(ctx, r.client, keys, r.tombstoneTTL.Milliseconds(), r.channel, msg).Slice()
		return err
	})
	if err != nil {
		return false, err
	}
	n, _ := res[0].(int64)
	if len(res) > 1 {
		reply, _ := res[1].(string)
		r.fail("tombstone", errors.New(reply))
		if !strings.HasPrefix(reply, oomPrefix) {
			return n > 0, fmt.Errorf("cache: redis tombstone: %s", reply)
		}
	}
	return n > 0, nil
}

// oomPrefix starts the reply of a write refused because Redis is out of
// memory under noeviction. Redis then refuses the decision writes a
// tombstone guards against as well, so an eviction whose tombstone was
// refused for that reason still stands; any other refusal leaves the
// write-back race open and is reported.
const oomPrefix = "OOM "

// evictMatching writes tombstone (if not ""), unlinks every key matching
// pattern, calling deleted for each key that existed, then publishes
// payload. The tombstone comes first so that a load finishing during the
// scan cannot write back what the scan removes. It stops at the first call
// that finds Redis unreachable instead of making each later call time out
// too; the first call is bounded by the tier's Timeout, so an outage costs
// about that.
func (r *redisTier) evictMatching(ctx context.Context, tombstone, pattern, payload string, deleted func(key string)) error {
	var tombErr error
	if tombstone != "" {
		err := r.adminCall(ctx, "tombstone", r.timeout, func(ctx context.Context) error {
			return r.client.Set(ctx, tombstone, "1", r.tombstoneTTL).Err()
		})
		if unreachable(err) {
			return err
		}
		if !redis.HasErrorPrefix(err, oomPrefix) {
			tombErr = err
		}
	}
	err := r.scanDelete(ctx, pattern, deleted)
	if unreachable(err) {
		return errors.Join(tombErr, err)
	}
	// After an error reply (a refused UNLINK, say), the fleet's memory
	// tiers can still be told.
	return errors.Join(tombErr, err, r.publish(ctx, payload))
}

// evictFingerprint evicts every decision whose key has fingerprint fpHex.
func (r *redisTier) evictFingerprint(ctx context.Context, fpHex string, found func(Key)) error {
	return r.evictMatching(ctx, r.fpTombstone(fpHex), r.fpPattern(fpHex), "f:"+fpHex, func(key string) {
		if k, ok := r.parseKey(key); ok {
			found(k)
		}
	})
}

// flush evicts every decision of the namespace. On a Cluster there is no
// namespace tombstone (see the package doc).
func (r *redisTier) flush(ctx context.Context, found func(Key)) error {
	return r.evictMatching(ctx, r.flushTomb, r.matchAll, "flush", func(key string) {
		if k, ok := r.parseKey(key); ok {
			found(k)
		}
	})
}

// scanDelete unlinks every key matching pattern on every primary and calls
// deleted for each key that existed.
func (r *redisTier) scanDelete(ctx context.Context, pattern string, deleted func(key string)) error {
	var mu sync.Mutex // ForEachMaster runs nodes concurrently
	node := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			var keys []string
			err := r.adminCall(ctx, "scan", r.adminTimeout(), func(ctx context.Context) error {
				var err error
				keys, cursor, err = c.Scan(ctx, cursor, pattern, scanBatch).Result()
				return err
			})
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				var cmds []redis.Cmder
				// One UNLINK per key: a multi-key UNLINK fails with CROSSSLOT
				// on a cluster node even when all slots live on that node.
				err = r.adminCall(ctx, "del", r.adminTimeout(), func(ctx context.Context) error {
					var err error
					cmds, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
						for _, k := range keys {
							p.Unlink(ctx, k)
						}
						return nil
					})
					return err
				})
				if err != nil {
					return err
				}
				mu.Lock()
				for i, cmd := range cmds {
					if n, _ := cmd.(*redis.IntCmd).Result(); n > 0 {
						deleted(keys[i])
					}
				}
				mu.Unlock()
			}
			if cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return node(ctx, c)
		})
	}
	return node(ctx, r.client)
}

// escapeGlob escapes the characters special to Redis MATCH patterns, so
// that a namespace such as "team[a]" matches only itself.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch c {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}
