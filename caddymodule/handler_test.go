package caddymodule

// Tests of the provisioned handler called directly, the way Caddy calls it
// (no server): placeholders on cache hits, and the max_entries bound under
// a spray of unique tokens. The fixtures are shared with the handler
// benchmarks in bench_test.go.

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
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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

// TestPlaceholdersOnCacheHits checks that the placeholder values built once
// per decision are the right decision's, on the first request and on cache
// hits, for two tokens in turn.
func TestPlaceholdersOnCacheHits(t *testing.T) {
	t.Parallel()
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
