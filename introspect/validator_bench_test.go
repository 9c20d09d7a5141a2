package introspect

// Warm-path and memory benchmarks of the validator and the decision cache.
//
//	go test -run '^$' -bench 'ValidatorWarm|PolicyAuthorize|Extract' -benchmem ./introspect/
//	go test -run '^$' -bench 'DecisionCacheMillion' -benchtime 1x ./introspect/
//	go test -run '^$' -bench 'Verify' -benchmem ./introspect/jwt/   (cold: ours vs bare jwx)
//
// The decisions are built from a realistic RFC 9068 access token: ten claims
// parsed by the one strict JSON reader and read by the shared claim readers,
// each decision with its own strings, as in production (every cached
// decision comes from a different token).

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/tokengate/tokengate/cache"
	"github.com/tokengate/tokengate/internal/benchjwt"
	"github.com/tokengate/tokengate/introspect/claims"
)

const (
	benchIssuer   = "https://idp.example.com/realms/acme"
	benchAudience = "https://api.example.com/orders"
)

// benchClaimsJSON is the payload of a typical RFC 9068 access token with
// ten claims (the one caddymodule's BenchmarkLimits signs); i makes sub,
// client_id and jti unique.
func benchClaimsJSON(i int, now time.Time) []byte {
	return benchjwt.TenClaims(i, benchIssuer, benchAudience, now)
}

var benchInterned = claims.NewInterned(benchIssuer, []string{benchAudience})

// benchDecision builds decision i from its claims.
func benchDecision(tb testing.TB, i int, now time.Time) *Decision {
	obj, err := claims.ParseStrictObject(benchClaimsJSON(i, now))
	if err != nil {
		tb.Fatal(err)
	}
	d, err := claims.NewDecisionWith(obj, "jwt", benchInterned)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// benchJWT is a JWT-shaped token of realistic length (about 800 bytes for
// ten claims and an RS256 signature); only its bytes matter on the warm path.
func benchJWT(now time.Time) string {
	enc := base64.RawURLEncoding
	sig := make([]byte, 256)
	return enc.EncodeToString([]byte(`{"alg":"RS256","typ":"at+jwt","kid":"rsa-2025-06"}`)) + "." +
		enc.EncodeToString(benchClaimsJSON(1, now)) + "." + enc.EncodeToString(sig)
}

func benchValidator(tb testing.TB, maxEntries int) *Validator {
	tb.Helper()
	c, err := cache.New[*Verdict](cache.Config{MaxEntries: maxEntries}, cache.JSONCodec[*Verdict]{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	v := &Validator{cache: c, keyer: cache.NewKeyer(nil), cfg: Config{Cache: CacheOptions{TTL: 5 * time.Minute, NegativeTTL: 30 * time.Second}}}
	v.init()
	return v
}

// BenchmarkValidatorWarm is the warm path below Caddy: key derivation
// (SHA-256 of the token), the memory-tier hit, the expiry re-check and the
// route's policy — for a JWT and for an opaque (introspected) token.
func BenchmarkValidatorWarm(b *testing.B) {
	now := time.Now()
	opaque := base64.RawURLEncoding.EncodeToString(make([]byte, 190)) // 254 bytes, like a JWE reference token
	for _, tc := range []struct{ name, token string }{{"jwt", benchJWT(now)}, {"opaque", opaque}} {
		b.Run(tc.name, func(b *testing.B) {
			v := benchValidator(b, 1000)
			d := benchDecision(b, 1, now)
			v.cache.Set(context.Background(), v.keyer.Key(tc.token), &Verdict{Decision: d}, time.Hour)
			p := Policy{Scopes: []string{"orders:read"}, Audience: []string{benchAudience}}
			ctx := context.Background()
			b.SetBytes(int64(len(tc.token)))
			b.ReportAllocs()
			for b.Loop() {
				d, _, err := v.Validate(ctx, tc.token)
				if err != nil {
					b.Fatal(err)
				}
				if e := p.Authorize(d); e != nil {
					b.Fatal(e)
				}
			}
		})
	}
}

// BenchmarkPolicyAuthorize is the per-route check on its own.
func BenchmarkPolicyAuthorize(b *testing.B) {
	d := benchDecision(b, 1, time.Now())
	p := Policy{Scopes: []string{"orders:read", "orders:write"}, AnyScope: []string{"profile", "email"},
		Audience: []string{"https://other.example.com", benchAudience}}
	b.ReportAllocs()
	for b.Loop() {
		if e := p.Authorize(d); e != nil {
			b.Fatal(e)
		}
	}
}

// BenchmarkExtract is RFC 6750 token extraction from the Authorization
// header, including the b64token syntax check over every byte.
func BenchmarkExtract(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	tok := benchJWT(time.Now())
	r.Header.Set("Authorization", "Bearer "+tok)
	var x Extractor
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if t, from, err := x.Extract(r); err != nil || t != tok || from != TransportHeader {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecisionCacheMillion fills a decision cache bounded to one
// million entries with one million realistic positive decisions and
// reports the heap held per entry: all of it (decision, its string,
// verdict, cache entry) and the cache's own share (the same decisions held
// in a plain slice are subtracted). What the Caddy handler adds to a used
// decision is in caddymodule's BenchmarkLimits/memory.
func BenchmarkDecisionCacheMillion(b *testing.B) {
	if testing.Short() {
		b.Skip("allocates about 2 GB")
	}
	const n = 1_000_000
	now := time.Now()
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var perEntry, perDecision, perCache float64
	var held int
	for b.Loop() {
		// The decisions alone.
		base := heap()
		ds := make([]*Decision, n)
		for i := range ds {
			ds[i] = benchDecision(b, i, now)
		}
		perDecision = float64(heap()-base) / n
		runtime.KeepAlive(ds)
		ds = nil

		// Decisions in the cache, keyed like tokens are (32-byte digests).
		base = heap()
		c, err := cache.New[*Verdict](cache.Config{MaxEntries: n}, cache.JSONCodec[*Verdict]{})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		var k cache.Key
		for i := range n {
			binary.LittleEndian.PutUint64(k[:], uint64(i))
			k[31] = 0xa5
			c.Set(ctx, k, &Verdict{Decision: benchDecision(b, i, now)}, time.Hour)
		}
		held = c.Len()
		if held < n*9/10 || held > n {
			b.Fatalf("%d entries held in a cache of %d", held, n)
		}
		full := heap()
		perEntry = float64(full-base) / float64(held)
		perCache = perEntry - perDecision
		runtime.KeepAlive(c)
		_ = c.Close()
	}
	b.ReportMetric(perEntry, "bytes/entry")
	b.ReportMetric(perDecision, "decision-bytes/entry")
	b.ReportMetric(perCache, "cache-bytes/entry")
	b.ReportMetric(float64(held), "entries")
}
