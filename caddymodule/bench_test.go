package caddymodule

// Handler benchmarks: the whole ServeHTTP of an in-process, provisioned
// bearer_auth handler, the way Caddy calls it, on the warm path in
// parallel and the cold JWT path (a new token every request). The warm
// path on one P, with the harness subtracted, is BenchmarkLimits/warm in
// limits_bench_test.go. Their fixtures, and the tests that use them, are in
// handler_test.go.
//
//	go test -run '^$' -bench 'Handler' -benchmem ./caddymodule/
//
// Every iteration gets a fresh request context with a fresh Replacer, as
// every real request does (passThrough measures that harness around a
// do-nothing handler).

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

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

// passThrough only calls next: the harness that BenchmarkLimits/warm
// subtracts.
type passThrough struct{}

func (passThrough) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

// BenchmarkHandlerWarmJWTParallel is BenchmarkLimits/warm/jwt on every P,
// to show that the warm path does not serialise on a lock.
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
