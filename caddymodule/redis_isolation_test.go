package caddymodule

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/redistest"
)

// TestRoutesWithDifferentTrustDoNotShareRedisDecisions: two routes on one
// Redis, trusting different issuers (and keys) for the same audience. A token
// accepted by the first must not be accepted by the second through the shared
// tier: each set of validation settings has its own Redis namespace.
func TestRoutesWithDifferentTrustDoNotShareRedisDecisions(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// Route b trusts only a key of its own.
	otherJWKS := filepath.Join(t.TempDir(), "other-jwks.json")
	if err := os.WriteFile(otherJWKS, []byte(publicJWKS(t, otherKey(t, "other"))), 0o600); err != nil {
		t.Fatal(err)
	}
	block := func(issuer, jwks string) string {
		return fmt.Sprintf(`bearer_auth {
			issuer %s
			audience %s
			jwt {
				jwks_file %s
			}
			cache {
				redis %s
			}
		}
		respond "ok"`, issuer, demoAudience, jwks, srv.URL())
	}
	tc := startCaddy(t, fmt.Sprintf(`	handle /a {
		%s
	}
	handle /b {
		%s
	}`, block(demoIssuer, "../demo/demo-jwks.json"), block("https://other.test", otherJWKS)))
	tok := mint(t, demoKey, demoIssuer, demoAudience, "read", "demo-client", time.Hour, time.Now())
	if r := tc.get("/a", "Bearer "+tok); r.status != 200 {
		t.Fatalf("route a: %d %s", r.status, r.body)
	}
	if r := tc.get("/b", "Bearer "+tok); r.status != 401 {
		t.Fatalf("route b accepted a token of an issuer it does not trust: %d", r.status)
	}
}
