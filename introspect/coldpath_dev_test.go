package introspect

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/tokengate/tokengate/introspect/internal/jwttest"
)

func BenchmarkDevColdValidateEdDSA(b *testing.B) {
	k := jwttest.NewKeys(b)
	pub := jwttest.PublicJWK(b, k.Ed1, "ed-1", jwa.EdDSA)
	set := jwttest.Set(b, pub)
	js, _ := json.Marshal(set)
	f := filepath.Join(b.TempDir(), "jwks.json")
	os.WriteFile(f, js, 0o600)
	v, err := New(Config{Issuer: benchIssuer, Audience: []string{benchAudience}, JWT: &JWTOptions{JWKSFile: f},
		Cache: CacheOptions{MaxEntries: 1000}})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	now := time.Now()
	n := 20000
	if testing.Short() {
		n = 600
	}
	toks := make([]string, n)
	for i := range toks {
		var claims map[string]any
		json.Unmarshal(benchClaimsJSON(i, now), &claims)
		toks[i] = jwttest.Sign(b, "EdDSA", k.Ed1, jwttest.Header("EdDSA", "ed-1"), claims)
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, _, err := v.Validate(ctx, toks[i%n]); err != nil {
			b.Fatal(fmt.Sprint(i, err))
		}
		i++
	}
}
