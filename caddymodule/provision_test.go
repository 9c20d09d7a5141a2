package caddymodule

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tokengate/tokengate/cache"
)

// An eviction's tombstone must outlive any load that started before it, or
// that load can write the revoked decision back to Redis: at least twice
// the introspection timeout, and never below the cache's default.
func TestTombstoneOutlivesTheLongestLoad(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h       Handler
		atLeast time.Duration
	}{
		{"jwt only", Handler{}, cache.DefaultTombstoneTTL},
		{"default introspection timeout", Handler{Introspect: &IntrospectConfig{Timeout: caddy.Duration(5 * time.Second)}}, cache.DefaultTombstoneTTL},
		{"long introspection timeout", Handler{Introspect: &IntrospectConfig{Timeout: caddy.Duration(time.Minute)}}, 2 * time.Minute},
	} {
		if got := tc.h.tombstoneTTL(); got < tc.atLeast {
			t.Errorf("%s: tombstone TTL %v, want at least %v", tc.name, got, tc.atLeast)
		}
	}
}
