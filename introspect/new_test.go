package introspect

import (
	"testing"
	"time"

	"github.com/tokengate/tokengate/cache"
)

// An eviction's tombstone must outlive any load that started before it, or
// that load can write the revoked decision back to Redis: at least twice
// the introspection timeout, and never below the cache's default.
func TestTombstoneOutlivesTheLongestLoad(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		atLeast time.Duration
	}{
		{"jwt only", Config{}, cache.DefaultTombstoneTTL},
		{"default introspection timeout", Config{Introspect: &IntrospectOptions{}}.WithDefaults(), cache.DefaultTombstoneTTL},
		{"long introspection timeout", Config{Introspect: &IntrospectOptions{Timeout: time.Minute}}, 2 * time.Minute},
	} {
		if got := tombstoneTTL(tc.cfg); got < tc.atLeast {
			t.Errorf("%s: tombstone TTL %v, want at least %v", tc.name, got, tc.atLeast)
		}
	}
}

// Config.Check and the JWT verifier apply one rule to algorithms: what
// passes the config check also builds.
func TestConfigCheckRefusesWhatTheVerifierRefuses(t *testing.T) {
	for _, alg := range []string{"none", "HS256", "ES256K", "RS1"} {
		cfg := Config{Issuer: "https://as.example", Audience: []string{"api"}, JWT: &JWTOptions{JWKSFile: "x", Algorithms: []string{alg}}}
		if err := cfg.Check(); err == nil {
			t.Errorf("algorithm %s passed Config.Check", alg)
		}
	}
	cfg := Config{Issuer: "https://as.example", Audience: []string{"api"}, JWT: &JWTOptions{JWKSFile: "x", Algorithms: []string{"ES256", "EdDSA", "PS256"}}}
	if err := cfg.Check(); err != nil {
		t.Errorf("good algorithms refused: %v", err)
	}
}

// NeedsDiscovery is the one answer to "does New fetch the metadata?": the
// doctor asks it too.
func TestNeedsDiscoveryFollowsWhatIsNotConfigured(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want bool
	}{
		{"jwt file", Config{JWT: &JWTOptions{JWKSFile: "f"}}, false},
		{"jwt url", Config{JWT: &JWTOptions{JWKSURL: "https://x/jwks"}}, false},
		{"jwt discovered", Config{JWT: &JWTOptions{}}, true},
		{"introspection endpoint", Config{Introspect: &IntrospectOptions{Endpoint: "https://x/i"}}, false},
		{"introspection discovered", Config{Introspect: &IntrospectOptions{}}, true},
		{"bearer without token endpoint", Config{Introspect: &IntrospectOptions{Endpoint: "https://x/i", AuthMethod: "bearer"}}, true},
		{"bearer with token endpoint", Config{Introspect: &IntrospectOptions{Endpoint: "https://x/i", AuthMethod: "bearer", TokenEndpoint: "https://x/t"}}, false},
	} {
		if got := tc.cfg.NeedsDiscovery(); got != tc.want {
			t.Errorf("%s: NeedsDiscovery = %v, want %v", tc.name, got, tc.want)
		}
	}
}
