package cache

import (
	"context"
	"encoding/hex"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// SharedOnce records id in the shared tier for ttl with SET NX PX, one
// atomic command, so that of several gateways shown the same id exactly one
// is told fresh=true. It is the fleet-wide replay check of DPoP proof jti
// values (RFC 9449 §11.1). answered=false when there is no Redis tier or it
// did not answer in time (counted and logged like every hot-path call).
// Keys are "<ns>:j:<hex id>" beside the decisions.
func (c *Cache[V]) SharedOnce(ctx context.Context, id [32]byte, ttl time.Duration) (fresh, answered bool) {
	r := c.rt
	if r == nil {
		return false, false
	}
	var b strings.Builder
	ns := strings.TrimSuffix(r.keyPrefix, ":d:")
	b.Grow(len(ns) + 3 + 64)
	b.WriteString(ns)
	b.WriteString(":j:")
	var h [64]byte
	hex.Encode(h[:], id[:])
	b.Write(h[:])
	key := b.String()
	err := r.guard(ctx, "set", func(ctx context.Context) error {
		ok, err := r.client.SetNX(ctx, key, "1", max(ttl, time.Millisecond)).Result()
		if err == redis.Nil {
			err = nil
		}
		fresh = ok
		return err
	})
	return fresh, err == nil
}
