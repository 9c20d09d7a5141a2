package caddymodule

// Handler benchmarks: the whole ServeHTTP of an in-process, provisioned
// bearer_auth handler, the way Caddy calls it, on the warm paths (decision
// cached) and the cold JWT path (a new token every request), plus the
// max_entries bound under a spray of unique tokens.
//
//	go test -run '^$' -bench 'Handler' -benchmem ./caddymodule/
//
// Every iteration gets a fresh request context with a fresh Replacer, as
// every real request does. BenchmarkHandlerHarness measures exactly that
// harness around a do-nothing handler: subtract its allocs/op to get the
// handler's own.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tokengate/tokengate/internal/testas"
)

const (
	benchIssuer   = "https://demo.tokengate.test"
	benchAudience = "demo-api"
)

// benchDemoFile returns the path of a file in the repository's demo/.
func benchDemoFile(tb testing.TB, name string) string {
	tb.Helper()
	p, err := filepath.Abs(filepath.Join("..", "demo", name))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		tb.Fatal(err)
	}
	return p
}

// provisionBench provisions h outside of any Caddy config, as Caddy would,
// and gives it the logger Caddy's default config gives it (INFO level), so
// that the debug line on success is checked but not written.
func provisionBench(tb testing.TB, h *Handler) *Handler {
	tb.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := h.Provision(ctx); err != nil {
		cancel()
		tb.Fatal(err)
	}
	h.logger = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	tb.Cleanup(func() {
		_ = h.Cleanup()
		cancel()
	})
	return h
}

// benchJWTHandler is the quick start's handler: a local JWKS file, scopes
// read, one forwarded claim.
func benchJWTHandler(tb testing.TB, maxEntries int) *Handler {
	tb.Helper()
	h := &Handler{
		Issuer:        benchIssuer,
		Audience:      []string{benchAudience},
		Scopes:        []string{"read"},
		JWT:           &JWTConfig{JWKSFile: benchDemoFile(tb, "demo-jwks.json")},
		Cache:         &CacheConfig{MaxEntries: maxEntries},
		ForwardClaims: []ForwardClaim{{Claim: "sub", Header: "X-User"}},
	}
	return provisionBench(tb, h)
}

// benchMint mints a demo JWT (ES256) like `caddy bearer-auth token` does.
func benchMint(tb testing.TB, sub string) string {
	tb.Helper()
	tok, err := mintToken(benchDemoFile(tb, "demo-private.jwk"), benchIssuer, []string{benchAudience},
		"read write", sub, "demo-client", time.Hour, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// okNext is the upstream: it only checks that the request got through.
type okNext struct{ n int }

func (o *okNext) ServeHTTP(http.ResponseWriter, *http.Request) error { o.n++; return nil }

// serveBench runs one request through h the way caddyhttp.Server prepares
// it for the first handler: a request of its own with a fresh Replacer
// that already has the HTTP placeholders mapped (caddyhttp.NewTestReplacer
// does what PrepareRequest does to the Replacer). next is called on
// success; any response written means a rejection.
func serveBench(h caddyhttp.MiddlewareHandler, base *http.Request, w http.ResponseWriter, next caddyhttp.Handler) error {
	r := base.WithContext(base.Context())
	caddyhttp.NewTestReplacer(r)
	return h.ServeHTTP(w, r, next)
}

func benchRequest(token string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/api/items", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("User-Agent", "bench")
	r.Header.Set("Accept", "*/*")
	return r
}

// runWarm serves the same request b.N times and fails on anything but a
// pass-through. The recorder is shared: on success nothing is written.
func runWarm(b *testing.B, h caddyhttp.MiddlewareHandler, r *http.Request) {
	b.Helper()
	w := httptest.NewRecorder()
	next := &okNext{}
	if err := serveBench(h, r, w, next); err != nil || next.n != 1 {
		b.Fatalf("warm-up request was not let through: err=%v code=%d body=%s", err, w.Code, w.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for b.Loop() {
		_ = serveBench(h, r, w, next)
	}
	b.StopTimer()
	reportCPU(b, cpu0)
	if next.n != b.N+1 || w.Body.Len() != 0 {
		b.Fatalf("%d of %d requests let through; body %q", next.n-1, b.N, w.Body)
	}
}

// processCPU is the CPU time this process has used (all threads, so the
// garbage collector's work counts too).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds cpu-ns/op: CPU time per iteration rather than wall time,
// which other load on a shared machine disturbs much less.
func reportCPU(b *testing.B, since time.Duration) {
	if b.N > 0 && since > 0 {
		b.ReportMetric(float64(processCPU()-since)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkHandlerHarness is the per-request cost of the harness itself
// (request copy, new Replacer with the HTTP placeholders, context) around
// a handler that only calls next. Subtract it from the other handler benchmarks.
func BenchmarkHandlerHarness(b *testing.B) {
	runWarm(b, passThrough{}, benchRequest("x"))
}

type passThrough struct{}

func (passThrough) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

// BenchmarkHandlerWarmJWT: a JWT whose decision is cached (the quick
// start's config: scopes read, forward_claim sub X-User).
func BenchmarkHandlerWarmJWT(b *testing.B) {
	h := benchJWTHandler(b, 0)
	runWarm(b, h, benchRequest(benchMint(b, "demo-user")))
}

// BenchmarkHandlerWarmJWTParallel is the same on every P, to show that
// the warm path does not serialise on a lock.
func BenchmarkHandlerWarmJWTParallel(b *testing.B) {
	h := benchJWTHandler(b, 0)
	tok := benchMint(b, "demo-user")
	if err := serveBench(h, benchRequest(tok), httptest.NewRecorder(), &okNext{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine its own request: the handler edits headers.
		r, w, next := benchRequest(tok), httptest.NewRecorder(), &okNext{}
		for pb.Next() {
			_ = serveBench(h, r, w, next)
		}
		if w.Body.Len() != 0 {
			b.Errorf("rejected: %s", w.Body)
		}
	})
}

// BenchmarkHandlerWarmIntrospection: an opaque token from the real
// in-process authorization server, introspected once, then cached.
func BenchmarkHandlerWarmIntrospection(b *testing.B) {
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
	r := benchRequest(as.Token(b, "svc-a", "read"))
	runWarm(b, h, r)
	b.StopTimer()
	if n := as.IntrospectionCalls(); n != 1 {
		b.Fatalf("introspection calls = %d, want 1 (the rest must be cache hits)", n)
	}
}

// BenchmarkHandlerColdJWT: a new token every request (pre-minted), so every
// request is a cache miss and a full ES256 verification; compare with
// introspect's BenchmarkVerifyES256.
func BenchmarkHandlerColdJWT(b *testing.B) {
	const pool = 4096
	toks := make([]*http.Request, pool)
	for i := range toks {
		toks[i] = benchRequest(benchMint(b, fmt.Sprintf("user-%d", i)))
	}
	h := benchJWTHandler(b, 0)
	w := httptest.NewRecorder()
	next := &okNext{}
	b.ReportAllocs()
	cpu0 := processCPU()
	i := 0
	for b.Loop() {
		if i > 0 && i%pool == 0 {
			// Forget the pool's decisions so that reuse misses again.
			b.StopTimer()
			_, _ = h.entry.validator.Flush(context.Background())
			b.StartTimer()
		}
		_ = serveBench(h, toks[i%pool], w, next)
		i++
	}
	reportCPU(b, cpu0)
	if next.n != i || w.Body.Len() != 0 {
		b.Fatalf("%d of %d let through; body %q", next.n, i, w.Body)
	}
}

// TestPlaceholdersOnCacheHits checks that the placeholder values built once
// per decision are the right decision's, on the first request and on cache
// hits, for two tokens in turn.
func TestPlaceholdersOnCacheHits(t *testing.T) {
	h := benchJWTHandler(t, 0)
	toks := map[string]string{"alice": benchMint(t, "alice"), "bob": benchMint(t, "bob")}
	for round := range 3 {
		for sub, tok := range toks {
			var got []string
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
				got = []string{repl.ReplaceKnown("{http.auth.user.id}|{http.auth.bearer.client_id}|{http.auth.bearer.scope}|"+
					"{http.auth.bearer.claims.sub}|{http.auth.bearer.claims.aud}|{http.auth.bearer.claims.nope}|{http.request.method}", ""),
					r.Header.Get("X-User")}
				return nil
			})
			w := httptest.NewRecorder()
			r := benchRequest(tok)
			r.Header.Set("X-User", "forged")
			if err := serveBench(h, r, w, next); err != nil || got == nil {
				t.Fatalf("round %d, %s: not let through (%v, %d %s)", round, sub, err, w.Code, w.Body)
			}
			want := []string{sub + "|demo-client|read write|" + sub + "|demo-api||GET", sub}
			if got[0] != want[0] || got[1] != want[1] {
				t.Errorf("round %d: got %q, want %q", round, got, want)
			}
		}
	}
}

// BenchmarkMetricsCacheRequest is what counting one cache hit costs: the
// cache calls it on every warm request.
func BenchmarkMetricsCacheRequest(b *testing.B) {
	m := getMetrics().forIssuer("https://as.example.com")
	b.ReportAllocs()
	for b.Loop() {
		m.CacheRequest("memory", true)
	}
}

// BenchmarkMetricsDecision is counting the allowed decision (pre-resolved).
func BenchmarkMetricsDecision(b *testing.B) {
	m := getMetrics().forIssuer("https://as.example.com")
	b.ReportAllocs()
	for b.Loop() {
		m.decision("allowed")
	}
}

// TestMaxEntriesHoldsUnderTokenSpray sends many unique tokens through the
// handler from several goroutines — good ones, then JWT-shaped garbage that
// gets negatively cached — while watching the memory tier's size. otter
// applies its bound as it drains its write buffer (128 entries per
// GOMAXPROCS, rounded up to a power of two), so under concurrent writes the
// size may pass max_entries by up to about that many entries for a moment:
// a constant, however many tokens arrive. After the spray it is at most
// max_entries, and the heap is where it was when the cache first filled:
// evicted decisions are freed.
func TestMaxEntriesHoldsUnderTokenSpray(t *testing.T) {
	if testing.Short() {
		t.Skip("sprays tokens")
	}
	const (
		maxEntries = 1000
		workers    = 4
	)
	slack := 2 * 128 * roundPow2(runtime.GOMAXPROCS(0))
	h := benchJWTHandler(t, maxEntries)
	v := h.entry.validator

	var maxSeen atomic.Int64
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			if n := int64(v.CachedDecisions()); n > maxSeen.Load() {
				maxSeen.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Microsecond):
			}
		}
	}()

	// spray sends requests 0..n-1 from several goroutines and counts the
	// statuses (200 = let through to next).
	spray := func(n int, req func(i int) *http.Request) map[int]int {
		var mu sync.Mutex
		statuses := map[int]int{}
		var wg sync.WaitGroup
		for g := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				next := &okNext{}
				for i := g; i < n; i += workers {
					w := httptest.NewRecorder()
					before := next.n
					if err := serveBench(h, req(i), w, next); err != nil {
						t.Error(err)
						return
					}
					code := w.Code
					if next.n > before {
						code = http.StatusOK
					}
					mu.Lock()
					statuses[code]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return statuses
	}

	good := make([]string, 3*maxEntries)
	for i := range good {
		good[i] = benchMint(t, fmt.Sprintf("user-%d", i))
	}
	if st := spray(len(good), func(i int) *http.Request { return benchRequest(good[i]) }); st[200] != len(good) {
		t.Fatalf("good tokens: statuses %v, want all %d let through", st, len(good))
	}

	// Garbage: unique JWT-shaped tokens with a bad signature. Each is
	// verified once and its invalid_token verdict cached for negative_ttl.
	signed := good[0][:strings.LastIndexByte(good[0], '.')+1]
	garbage := func(i int) *http.Request { return benchRequest(signed + b64url(fmt.Sprintf("%064d", i))) }
	var ms runtime.MemStats
	heapAt := func() uint64 { runtime.GC(); runtime.ReadMemStats(&ms); return ms.HeapAlloc }
	const first, rest = 2 * maxEntries, 18 * maxEntries
	if st := spray(first, garbage); st[401] != first {
		t.Fatalf("garbage: statuses %v, want all %d 401", st, first)
	}
	heapFull := heapAt()
	if st := spray(rest, func(i int) *http.Request { return garbage(first + i) }); st[401] != rest {
		t.Fatalf("garbage: statuses %v, want all %d 401", st, rest)
	}
	heapEnd := heapAt()
	close(stop)
	<-watched

	total := len(good) + first + rest
	t.Logf("max_entries %d: at most %d entries seen while %d unique tokens were sent from %d goroutines; %d at the end; heap %d KiB when full, %d KiB after %d more",
		maxEntries, maxSeen.Load(), total, workers, v.CachedDecisions(), heapFull>>10, heapEnd>>10, rest)
	if n := maxSeen.Load(); n > int64(maxEntries+slack) {
		t.Errorf("the memory tier reached %d entries; max_entries is %d (slack %d)", n, maxEntries, slack)
	}
	if n := v.CachedDecisions(); n > maxEntries {
		t.Errorf("%d entries after the spray; max_entries is %d", n, maxEntries)
	}
	// Without eviction, the last 18,000 verdicts (each well over 1 KiB)
	// would stay reachable; with it the heap is where it was.
	if heapEnd > heapFull+4<<20 {
		t.Errorf("heap grew from %d to %d KiB under the spray", heapFull>>10, heapEnd>>10)
	}
	// The cache still works: a good token, long evicted, is verified again.
	if st := spray(1, func(int) *http.Request { return benchRequest(good[0]) }); st[200] != 1 {
		t.Fatalf("good token after the spray: statuses %v", st)
	}
}

func roundPow2(n int) int {
	p := 1
	for p < n {
		p *= 2
	}
	return p
}
