package caddymodule

// Handler benchmarks: the whole ServeHTTP of an in-process, provisioned
// bearer_auth handler, the way Caddy calls it, on the warm paths (decision
// cached) and the cold JWT path (a new token every request). Their
// fixtures, and the tests that use them, are in handler_test.go.
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
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tokengate/tokengate/internal/testas"
)

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
