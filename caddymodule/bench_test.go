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

// serveBench runs one request through h the way caddyhttp.Server does
// before the first handler: a fresh Replacer in a fresh context. next is
// called on success; any response written means a rejection.
func serveBench(h caddyhttp.MiddlewareHandler, base *http.Request, w http.ResponseWriter, next caddyhttp.Handler) error {
	repl := caddy.NewReplacer()
	r := base.WithContext(context.WithValue(base.Context(), caddy.ReplacerCtxKey, repl))
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
	for b.Loop() {
		_ = serveBench(h, r, w, next)
	}
	b.StopTimer()
	if next.n != b.N+1 || w.Body.Len() != 0 {
		b.Fatalf("%d of %d requests let through; body %q", next.n-1, b.N, w.Body)
	}
}

// BenchmarkHandlerHarness is the per-request cost of the harness itself
// (new Replacer, context, request copy) around a handler that only calls
// next. Subtract it from the other handler benchmarks.
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
	i := 0
	for b.Loop() {
		if i > 0 && i%pool == 0 {
			// Forget the pool's decisions so that reuse misses again.
			b.StopTimer()
			_ = h.entry.cache.Flush(context.Background())
			b.StartTimer()
		}
		_ = serveBench(h, toks[i%pool], w, next)
		i++
	}
	if next.n != i || w.Body.Len() != 0 {
		b.Fatalf("%d of %d let through; body %q", next.n, i, w.Body)
	}
}

// TestMaxEntriesHoldsUnderTokenSpray sends many unique tokens through the
// handler — good ones, and JWT-shaped garbage that gets negatively cached —
// and checks that the memory tier never grows past max_entries, and that
// the heap stays flat once the cache is full.
func TestMaxEntriesHoldsUnderTokenSpray(t *testing.T) {
	if testing.Short() {
		t.Skip("sprays tokens")
	}
	const maxEntries = 500
	h := benchJWTHandler(t, maxEntries)
	c := h.entry.cache

	good := make([]*http.Request, 2*maxEntries)
	for i := range good {
		good[i] = benchRequest(benchMint(t, fmt.Sprintf("user-%d", i)))
	}
	var w *httptest.ResponseRecorder
	next := &okNext{}
	send := func(r *http.Request) {
		w = httptest.NewRecorder()
		if err := serveBench(h, r, w, next); err != nil {
			t.Fatal(err)
		}
	}
	maxSeen := 0
	check := func(when string) {
		if n := c.Len(); n > maxSeen {
			maxSeen = n
		}
		if n := c.Len(); n > maxEntries {
			t.Fatalf("%s: %d entries in a cache bounded to %d", when, n, maxEntries)
		}
	}

	for _, r := range good {
		send(r)
		check("good tokens")
	}
	if next.n != len(good) {
		t.Fatalf("%d of %d good tokens let through", next.n, len(good))
	}

	// Garbage: unique JWT-shaped tokens with a bad signature. Each one is
	// verified once and its invalid_token verdict cached for negative_ttl.
	garbage := func(i int) *http.Request {
		tok := benchMint(t, "x")
		tok = tok[:strings.LastIndexByte(tok, '.')+1] + b64url(fmt.Sprintf("%064d", i))
		return benchRequest(tok)
	}
	var ms runtime.MemStats
	heapAt := func() uint64 { runtime.GC(); runtime.ReadMemStats(&ms); return ms.HeapAlloc }
	const spray = 20 * maxEntries
	var heapFull uint64
	for i := range spray {
		send(garbage(i))
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("garbage token %d: status %d, want 401", i, w.Code)
		}
		if i%100 == 0 {
			check("garbage spray")
		}
		if i == 2*maxEntries {
			heapFull = heapAt()
		}
	}
	check("end")
	heapEnd := heapAt()
	t.Logf("max_entries %d: at most %d entries seen during %d unique tokens; heap %d KiB when full, %d KiB after %d more",
		maxEntries, maxSeen, len(good)+spray, heapFull>>10, heapEnd>>10, spray-2*maxEntries)
	// Growth well below one entry per sprayed token (each is ~1 KiB) means
	// old entries are freed, not accumulated.
	if heapEnd > heapFull+uint64(spray)*256 {
		t.Errorf("heap grew from %d to %d bytes under the spray", heapFull, heapEnd)
	}
	// The cache still works: a good token that was evicted is verified
	// again and let through.
	next.n = 0
	send(good[0])
	if next.n != 1 {
		t.Fatalf("good token after the spray: status %d", w.Code)
	}
}
