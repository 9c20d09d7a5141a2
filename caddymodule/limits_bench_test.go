package caddymodule

// BenchmarkLimits puts every performance figure of issue 12 beside its
// limit, measured in the same run:
//
//	go test -run '^$' -bench Limits -benchmem ./caddymodule/
//
// About 35 s on 2 cores once compiled, most of it the memory figures. For
// one million decisions, run the ten-claim one alone (with decisions of
// today's size: 4.5 GB of memory at its peak, and 5 minutes on 2 busy cores;
// the 2 KB one would need about 11 GB of heap):
//
//	TOKENGATE_BENCH_DECISIONS=1000000 go test -run '^$' -bench Limits/memory/ten-claims -benchtime 1x ./caddymodule/
//
//	cold/{RS256,ES256,EdDSA}/stdlib    the floor: SHA-256 of the signing input and
//	                                   the standard library's verify (already-parsed
//	                                   key), over fresh tokens (internal/benchjwt)
//	cold/{alg}/validate                Validator.Validate of a fresh token every time
//	                                   (introspect.New, static JWKS file; the cache
//	                                   must miss: checked), with the floor run over the
//	                                   same tokens in between, timer stopped:
//	                                   x-stdlib = CPU per validate / CPU per floor
//	                                   verify (x-stdlib-wall the same in wall time),
//	                                   beside limit-x 1.15
//	warm/{jwt,introspection}           the whole ServeHTTP on a cached decision (the
//	                                   quick start's config), with the harness (a
//	                                   fresh request context and Replacer a request,
//	                                   around passThrough) run in between:
//	                                   handler-ns/op = cpu-ns/op - harness-cpu-ns/op,
//	                                   beside limit-ns 3000
//	memory/{ten-claims,2KB-nested}     heap held per decision cached by
//	                                   Validator.Validate of fresh tokens (50,000 by
//	                                   default), the tokens themselves excluded:
//	                                   bytes/decision beside limit-bytes 400, and
//	                                   MB/million; memo-bytes/decision is what the
//	                                   handler adds to a decision once it let a
//	                                   request through (placeholders, the quick
//	                                   start's forward_claim), bytes/decision-used
//	                                   the sum
//
// Ratios are taken between loops interleaved in chunks, so a burst of other
// load on a shared machine falls on both sides. cpu-ns/op is the process's
// CPU time (every thread, so the garbage collector's work counts) per
// iteration.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/benchjwt"
	"github.com/tokengate/tokengate/internal/testas"
	"github.com/tokengate/tokengate/introspect"
)

// Limits of issue 12.
const (
	limitColdX       = 1.15 // validate CPU / stdlib verify CPU
	limitWarmNs      = 3000 // handler CPU per cached request
	limitDecisionMem = 400  // bytes per cached decision
)

func BenchmarkLimits(b *testing.B) {
	b.Run("cold", func(b *testing.B) {
		for _, alg := range benchjwt.Algs {
			b.Run(alg, func(b *testing.B) {
				b.Run("stdlib", func(b *testing.B) { benchColdStdlib(b, limitsPool(b, alg)) })
				b.Run("validate", func(b *testing.B) { benchColdValidate(b, limitsPool(b, alg)) })
			})
		}
	})
	b.Run("warm", func(b *testing.B) {
		b.Run("jwt", func(b *testing.B) {
			benchWarm(b, benchJWTHandler(b, 0), benchRequest(benchMint(b, "demo-user")))
		})
		b.Run("introspection", func(b *testing.B) {
			as := testas.Start(b)
			h := provisionBench(b, &Handler{
				Scopes: []string{"read"},
				Introspect: &IntrospectConfig{
					Endpoint:     as.IntrospectionURL(),
					ClientID:     testas.GatewayID,
					ClientSecret: testas.GatewaySecret,
				},
				ForwardClaims: []ForwardClaim{{Claim: "sub", Header: "X-User"}},
			})
			benchWarm(b, h, benchRequest(as.Token(b, "svc-a", "read")))
			if n := as.IntrospectionCalls(); n != 1 {
				b.Fatalf("introspection calls = %d, want 1 (the rest must be cache hits)", n)
			}
		})
	})
	b.Run("memory", func(b *testing.B) {
		b.Run("ten-claims", func(b *testing.B) { benchDecisionMemory(b, benchjwt.TenClaims) })
		b.Run("2KB-nested", func(b *testing.B) { benchDecisionMemory(b, benchjwt.NestedClaims) })
	})
}

// perOp is what one iteration took: wall and process CPU time, in ns.
type perOp struct{ wall, cpu float64 }

// interleave runs subject(i) under b.Loop and, after every chunk of
// iterations, with the timer stopped, floor(i) for the same i, then
// between(next i) if not nil. Both are timed the same way (wall and
// process CPU), so their ratio is taken over the same stretch of time.
func interleave(b *testing.B, chunk int, subject, floor func(i int), between func(next int)) (s, f perOp) {
	b.Helper()
	var sw, sc, fw, fc time.Duration
	n, done := 0, 0
	var t0 time.Time
	var c0 time.Duration
	catchUp := func(last bool) {
		sw += time.Since(t0)
		sc += processCPU() - c0
		b.StopTimer()
		t1, c1 := time.Now(), processCPU()
		for ; done < n; done++ {
			floor(done)
		}
		fw += time.Since(t1)
		fc += processCPU() - c1
		if between != nil {
			between(n)
		}
		if !last { // b.Loop has stopped the timer for good
			b.StartTimer()
			t0, c0 = time.Now(), processCPU()
		}
	}
	for b.Loop() {
		if n == 0 {
			t0, c0 = time.Now(), processCPU() // after b.Loop's own start
		} else if n%chunk == 0 {
			catchUp(false)
		}
		subject(n)
		n++
	}
	catchUp(true)
	per := func(d time.Duration) float64 { return float64(d) / float64(n) }
	return perOp{per(sw), per(sc)}, perOp{per(fw), per(fc)}
}

// coldPool is a pool of fresh tokens of one algorithm, its key's JWKS, and
// the tokens split for the floor. The stdlib and validate benchmarks of an
// algorithm share it.
type coldPool struct {
	key    *benchjwt.Key
	jwks   []byte
	tokens []string
	signed []benchjwt.Signed
}

var (
	limitsPoolsMu sync.Mutex
	limitsPools   = map[string]*coldPool{}
)

// limitsPool mints the pool of alg once per test binary: 4096 tokens, 2048
// for RS256 (about a millisecond each to sign). Each benchmark cycles
// through it; the validator's cache is flushed when it wraps.
func limitsPool(b *testing.B, alg string) *coldPool {
	b.Helper()
	limitsPoolsMu.Lock()
	defer limitsPoolsMu.Unlock()
	if p := limitsPools[alg]; p != nil {
		return p
	}
	n := 4096
	if alg == "RS256" {
		n = 2048
	}
	k, err := benchjwt.NewKey(alg, "limits-"+alg)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	p := &coldPool{key: k}
	if p.tokens, err = k.MintN(n, func(i int) []byte { return benchjwt.TenClaims(i, benchIssuer, benchAudience, now) }); err != nil {
		b.Fatal(err)
	}
	if p.signed, err = benchjwt.SplitAll(p.tokens); err != nil {
		b.Fatal(err)
	}
	if p.jwks, err = k.JWKS(); err != nil {
		b.Fatal(err)
	}
	limitsPools[alg] = p
	return p
}

// benchColdStdlib is the floor on its own.
func benchColdStdlib(b *testing.B, p *coldPool) {
	pub := p.key.Public()
	b.ReportAllocs()
	cpu0 := processCPU()
	i := 0
	for b.Loop() {
		if !benchjwt.Verify(pub, p.signed[i%len(p.signed)]) {
			b.Fatal("a pool token does not verify")
		}
		i++
	}
	reportCPU(b, cpu0)
}

// cacheCounter is the validator's Observer: it counts memory-tier hits and
// misses.
type cacheCounter struct{ hits, misses atomic.Int64 }

func (c *cacheCounter) CacheRequest(tier string, hit bool) {
	if tier == "memory" {
		if hit {
			c.hits.Add(1)
		} else {
			c.misses.Add(1)
		}
	}
}
func (*cacheCounter) RedisError(string)                          {}
func (*cacheCounter) Coalesced()                                 {}
func (*cacheCounter) UpstreamCall(string, time.Duration, string) {}
func (*cacheCounter) JWKSRefresh(bool)                           {}

// limitsValidator is a local-JWT validator of the benchmark issuer and
// audience with the key set jwks (written to a file), as `caddy run` would
// build it.
func limitsValidator(b *testing.B, jwks []byte, maxEntries int) (*introspect.Validator, *cacheCounter) {
	b.Helper()
	file := filepath.Join(b.TempDir(), "jwks.json")
	if err := os.WriteFile(file, jwks, 0o600); err != nil {
		b.Fatal(err)
	}
	obs := &cacheCounter{}
	v, err := introspect.New(introspect.Config{
		Issuer:   benchIssuer,
		Audience: []string{benchAudience},
		JWT:      &introspect.JWTOptions{JWKSFile: file},
		Cache:    introspect.CacheOptions{MaxEntries: maxEntries},
		Observer: obs,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	return v, obs
}

// benchColdValidate: every Validate is of a token the cache has not seen.
func benchColdValidate(b *testing.B, p *coldPool) {
	pool := len(p.tokens)
	v, obs := limitsValidator(b, p.jwks, 2*pool)
	ctx := context.Background()
	pub := p.key.Public()
	b.ReportAllocs()
	s, f := interleave(b, 256, func(i int) {
		if _, _, err := v.Validate(ctx, p.tokens[i%pool]); err != nil {
			b.Fatal(err)
		}
	}, func(i int) {
		if !benchjwt.Verify(pub, p.signed[i%pool]) {
			b.Fatal("a pool token does not verify")
		}
	}, func(next int) {
		if next%pool == 0 {
			// Forget the pool's decisions so that reuse misses again.
			_, _ = v.Flush(ctx)
		}
	})
	if h, m := obs.hits.Load(), obs.misses.Load(); h != 0 || m != int64(b.N) {
		b.Fatalf("%d cache hits and %d misses in %d validations: every one must miss", h, m, b.N)
	}
	b.ReportMetric(s.cpu, "cpu-ns/op")
	b.ReportMetric(f.cpu, "stdlib-cpu-ns/op")
	b.ReportMetric(s.cpu/f.cpu, "x-stdlib")
	b.ReportMetric(s.wall/f.wall, "x-stdlib-wall")
	b.ReportMetric(limitColdX, "limit-x")
}

// benchWarm serves the same request b.N times through h on a cached
// decision, failing on anything but a pass-through, and the harness
// (passThrough) as many times in between.
func benchWarm(b *testing.B, h *Handler, r *http.Request) {
	w := httptest.NewRecorder()
	next, hnext := &okNext{}, &okNext{}
	if err := serveBench(h, r, w, next); err != nil || next.n != 1 {
		b.Fatalf("warm-up request was not let through: err=%v code=%d body=%s", err, w.Code, w.Body)
	}
	b.ReportAllocs()
	s, f := interleave(b, 1024, func(int) { _ = serveBench(h, r, w, next) },
		func(int) { _ = serveBench(passThrough{}, r, w, hnext) }, nil)
	if next.n != b.N+1 || hnext.n != b.N || w.Body.Len() != 0 {
		b.Fatalf("%d of %d requests let through; body %q", next.n-1, b.N, w.Body)
	}
	b.ReportMetric(s.cpu, "cpu-ns/op")
	b.ReportMetric(f.cpu, "harness-cpu-ns/op")
	b.ReportMetric(s.cpu-f.cpu, "handler-ns/op")
	b.ReportMetric(s.wall-f.wall, "handler-wall-ns/op")
	b.ReportMetric(limitWarmNs, "limit-ns")
}

// benchDecisions is how many decisions the memory benchmarks cache.
func benchDecisions(b *testing.B) int {
	if s := os.Getenv("TOKENGATE_BENCH_DECISIONS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1000 {
			b.Fatalf("TOKENGATE_BENCH_DECISIONS=%q: want a number of decisions, at least 1000", s)
		}
		return n
	}
	return 50_000
}

// heapInUse is the live heap after two full collections.
func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// benchDecisionMemory validates fresh EdDSA tokens (the fastest to sign
// and check) with the given claims into a validator's memory cache, big
// sized to hold them all, and reports the heap they add per decision.
// The tokens are minted before the baseline, the validator after it.
func benchDecisionMemory(b *testing.B, claims func(i int, iss, aud string, now time.Time) []byte) {
	n := benchDecisions(b)
	k, err := benchjwt.NewKey("EdDSA", "limits-memory")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	toks, err := k.MintN(n, func(i int) []byte { return claims(i, benchIssuer, benchAudience, now) })
	if err != nil {
		b.Fatal(err)
	}
	jwks, err := k.JWKS()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	fwd := internForwardSpec([]string{"sub"}) // the quick start's forward_claim
	var perDecision, perMemo float64
	var held int
	for b.Loop() {
		// The validator is built inside the window: its cache's own
		// structures are part of what the decisions cost.
		base := heapInUse()
		v, obs := limitsValidator(b, jwks, n)
		if err := benchjwt.Parallel(n, func(i int) error {
			_, _, err := v.Validate(ctx, toks[i])
			return err
		}); err != nil {
			b.Fatal(err)
		}
		used := heapInUse()
		held = v.CachedDecisions()
		if held < n*98/100 || held > n {
			b.Fatalf("%d decisions held of %d validated", held, n)
		}
		if h := obs.hits.Load(); h != 0 {
			b.Fatalf("%d cache hits: every token must be new", h)
		}
		perDecision = (float64(used) - float64(base)) / float64(held)
		// What the handler adds once a decision has let a request through
		// (placeholders, forward_claim values): the memo.
		for _, t := range toks {
			d, _, err := v.Validate(ctx, t)
			if err != nil {
				b.Fatal(err)
			}
			if !fwd.direct { // as forwardClaims does: sub needs no memo
				memoOf(d).forwarded(fwd)
			}
		}
		perMemo = (float64(heapInUse()) - float64(used)) / float64(held)
		v.Close()
	}
	runtime.KeepAlive(toks)
	var tokBytes int
	for _, t := range toks {
		tokBytes += len(t)
	}
	b.ReportMetric(perDecision, "bytes/decision")
	b.ReportMetric(perMemo, "memo-bytes/decision")
	b.ReportMetric(perDecision+perMemo, "bytes/decision-used")
	b.ReportMetric(limitDecisionMem, "limit-bytes")
	b.ReportMetric(perDecision, "MB/million") // a million at that size: the same number, in MB
	b.ReportMetric(float64(held), "decisions")
	b.ReportMetric(float64(tokBytes)/float64(n), "token-bytes")
}
