package cache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap/zaptest"
)

// verdict stands in for introspect.Verdict: a small JSON-serialisable struct
// cached by pointer.
type verdict struct {
	Active bool   `json:"active"`
	Sub    string `json:"sub"`
	Exp    int64  `json:"exp"`
}

// countingObserver records Observer events for assertions.
type countingObserver struct {
	mu        sync.Mutex
	requests  map[string]int // "memory/hit", "redis/miss", ...
	errors    map[string]int
	coalesced atomic.Int64
}

func newObserver() *countingObserver {
	return &countingObserver{requests: map[string]int{}, errors: map[string]int{}}
}

func (o *countingObserver) CacheRequest(tier string, hit bool) {
	r := "miss"
	if hit {
		r = "hit"
	}
	o.mu.Lock()
	o.requests[tier+"/"+r]++
	o.mu.Unlock()
}

func (o *countingObserver) RedisError(op string) {
	o.mu.Lock()
	o.errors[op]++
	o.mu.Unlock()
}

func (o *countingObserver) Coalesced() { o.coalesced.Add(1) }

func (o *countingObserver) req(s string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.requests[s]
}

func (o *countingObserver) errCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, v := range o.errors {
		n += v
	}
	return n
}

func newMem(t testing.TB, cfg Config) *Cache[*verdict] {
	t.Helper()
	c, err := New(cfg, JSONCodec[*verdict]{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var plain = NewKeyer(nil)

func TestKeyer(t *testing.T) {
	t.Parallel()
	const tok = "2YotnFZFEjr1zCsicMWpAA"
	k1, k2 := plain.Key(tok), plain.Key(tok)
	if k1 != k2 {
		t.Fatal("plain keyer is not deterministic")
	}
	if k1 == plain.Key(tok+"x") {
		t.Fatal("different tokens, same key")
	}
	if (Keyer{}).Key(tok) != k1 {
		t.Fatal("zero Keyer differs from NewKeyer(nil)")
	}
	h := NewKeyer([]byte("s3cret"))
	if !h.Keyed() || plain.Keyed() {
		t.Fatal("Keyed() wrong")
	}
	if h.Key(tok) == k1 {
		t.Fatal("HMAC keyer gives the plain SHA-256 key")
	}
	if again := h.Key(tok); h.Key(tok) != again {
		t.Fatal("HMAC keyer is not deterministic")
	}
	if NewKeyer([]byte("other")).Key(tok) == h.Key(tok) {
		t.Fatal("different secrets, same key")
	}
	if s := k1.String(); len(s) != 64 || s[:16] != k1.Fingerprint() {
		t.Fatalf("String %q / Fingerprint %q", s, k1.Fingerprint())
	}
	if p, err := ParseKey(k1.String()); err != nil || p != k1 {
		t.Fatalf("ParseKey round trip: %v", err)
	}
	// The key must not contain the token in any form.
	if s := k1.String(); s == tok {
		t.Fatal("key is the token")
	}
}

// Not parallel: AllocsPerRun counts the whole process's allocations.
func TestKeyDoesNotAllocate(t *testing.T) {
	tok := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwic2NvcGUiOiJyZWFkIHdyaXRlIn0.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
	for name, k := range map[string]Keyer{"sha256": plain, "hmac": NewKeyer([]byte("secret"))} {
		if raceEnabled && k.Keyed() {
			continue
		}
		var sink Key
		if n := testing.AllocsPerRun(1000, func() { sink = k.Key(tok) }); n != 0 {
			t.Errorf("%s: Key allocates %v times per call", name, n)
		}
		_ = sink
	}
}

func TestMemoryGetSetExpiry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	obs := newObserver()
	c := newMem(t, Config{Observer: obs})
	k := plain.Key("tok")
	if _, ok := c.Get(ctx, k); ok {
		t.Fatal("hit on empty cache")
	}
	const ttl = 150 * time.Millisecond
	start := time.Now()
	c.Set(ctx, k, &verdict{Active: true, Sub: "alice"}, ttl)
	v, ok := c.Get(ctx, k)
	if !ok || v.Sub != "alice" {
		t.Fatalf("Get = %v, %v", v, ok)
	}
	if obs.req("memory/hit") != 1 || obs.req("memory/miss") != 1 {
		t.Fatalf("observer: %v", obs.requests)
	}
	// Still there well before the TTL (unless the machine stalled).
	time.Sleep(ttl / 3)
	if _, ok := c.Get(ctx, k); !ok && time.Since(start) < ttl {
		t.Fatal("expired early")
	}
	waitFor(t, 3*ttl, "entry to expire", func() bool {
		_, ok := c.Get(ctx, k)
		return !ok
	})
	if el := time.Since(start); el < ttl {
		t.Fatalf("expired after %v, TTL %v", el, ttl)
	}
}

func TestNonPositiveTTLNotStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newMem(t, Config{})
	for i, ttl := range []time.Duration{0, -time.Second} {
		k := plain.Key(fmt.Sprint("tok", i))
		c.Set(ctx, k, &verdict{}, ttl)
		if _, ok := c.Get(ctx, k); ok {
			t.Fatalf("ttl %v stored", ttl)
		}
		var calls atomic.Int32
		load := func(context.Context) (*verdict, time.Duration, error) {
			calls.Add(1)
			return &verdict{Sub: "x"}, ttl, nil
		}
		for range 2 {
			v, cached, err := c.Load(ctx, k, load)
			if err != nil || cached || v.Sub != "x" {
				t.Fatalf("Load = %v, %v, %v", v, cached, err)
			}
		}
		if calls.Load() != 2 {
			t.Fatalf("ttl %v: loader called %d times, want 2 (nothing cached)", ttl, calls.Load())
		}
	}
}

func TestMaxEntriesBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const max = 1000
	c := newMem(t, Config{MaxEntries: max})
	for i := range 10 * max {
		c.Set(ctx, plain.Key(fmt.Sprint("spray-", i)), &verdict{}, time.Hour)
	}
	c.mem.CleanUp() // otter evicts in its maintenance; run it now
	if n := c.Len(); n > max {
		t.Fatalf("Len = %d after 10x spray, MaxEntries %d", n, max)
	}
	if n := c.Len(); n < max/2 {
		t.Fatalf("Len = %d, suspiciously low", n)
	}
}

// TestLoadCoalesces runs in a synctest bubble: synctest.Wait returns once
// every caller is blocked, so all of them are waiting on the one load in
// flight when it finishes.
func TestLoadCoalesces(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		obs := newObserver()
		c := newMem(t, Config{Observer: obs})
		k := plain.Key("hot")
		var calls atomic.Int32
		release := make(chan struct{})
		load := func(context.Context) (*verdict, time.Duration, error) {
			calls.Add(1)
			<-release
			return &verdict{Sub: "bob"}, time.Minute, nil
		}
		const n = 50
		errs := make(chan error, n)
		for range n {
			go func() {
				v, _, err := c.Load(ctx, k, load)
				if err == nil && v.Sub != "bob" {
					err = fmt.Errorf("got %+v", v)
				}
				errs <- err
			}()
		}
		synctest.Wait() // every caller is in Load, waiting for the loader
		close(release)
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if calls.Load() != 1 {
			t.Fatalf("loader called %d times, want 1", calls.Load())
		}
		if got := obs.coalesced.Load(); got != n-1 {
			t.Fatalf("Coalesced = %d, want %d", got, n-1)
		}
		if _, cached, _ := c.Load(ctx, k, load); !cached || calls.Load() != 1 {
			t.Fatal("loaded value not cached")
		}
	})
}

func TestLoadErrorsNotCached(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		obs := newObserver()
		c := newMem(t, Config{Observer: obs})
		k := plain.Key("flaky")
		boom := errors.New("AS unreachable")
		var calls atomic.Int32
		release := make(chan struct{})
		fail := func(context.Context) (*verdict, time.Duration, error) {
			calls.Add(1)
			<-release
			return nil, time.Minute, boom
		}
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				if _, _, err := c.Load(ctx, k, fail); !errors.Is(err, boom) {
					t.Errorf("waiter got %v, want %v", err, boom)
				}
			})
		}
		synctest.Wait() // all ten wait for the one failing load
		close(release)
		wg.Wait()
		if calls.Load() != 1 || obs.coalesced.Load() != 9 {
			t.Fatalf("loader calls %d, coalesced %d: want one load shared by ten callers", calls.Load(), obs.coalesced.Load())
		}
		if _, _, err := c.Load(ctx, k, fail); !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if calls.Load() != 2 {
			t.Fatalf("error was cached: loader called %d times, want 2", calls.Load())
		}
		v, cached, err := c.Load(ctx, k, func(context.Context) (*verdict, time.Duration, error) {
			return &verdict{Sub: "ok"}, time.Minute, nil
		})
		if err != nil || cached || v.Sub != "ok" {
			t.Fatalf("after errors: %v %v %v", v, cached, err)
		}
	})
}

func TestLoadSurvivesFirstCallerCancel(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := newMem(t, Config{})
		k := plain.Key("cancel")
		release := make(chan struct{})
		loaderErr := make(chan error, 1)
		load := func(ctx context.Context) (*verdict, time.Duration, error) {
			<-release
			loaderErr <- ctx.Err()
			return &verdict{Sub: "carol"}, time.Minute, nil
		}
		ctx1, cancel1 := context.WithCancel(context.Background())
		first := make(chan error, 1)
		go func() {
			_, _, err := c.Load(ctx1, k, load)
			first <- err
		}()
		synctest.Wait() // the first caller leads: its load is running
		second := make(chan *verdict, 1)
		go func() {
			v, _, _ := c.Load(context.Background(), k, load)
			second <- v
		}()
		synctest.Wait() // the second caller waits for the same load
		cancel1()
		if err := <-first; !errors.Is(err, context.Canceled) {
			t.Fatalf("first caller: %v, want context.Canceled", err)
		}
		close(release)
		if v := <-second; v == nil || v.Sub != "carol" {
			t.Fatalf("second caller got %v", v)
		}
		if err := <-loaderErr; err != nil {
			t.Fatalf("loader context was cancelled: %v", err)
		}
		if _, ok := c.Get(context.Background(), k); !ok {
			t.Fatal("value not cached")
		}
	})
}

func TestLoadPanicIsError(t *testing.T) {
	t.Parallel()
	c := newMem(t, Config{Logger: zaptest.NewLogger(t)})
	_, _, err := c.Load(context.Background(), plain.Key("p"), func(context.Context) (*verdict, time.Duration, error) {
		panic("bug in loader")
	})
	if err == nil {
		t.Fatal("panic not reported")
	}
}

func TestEvictionDuringLoadNotStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newMem(t, Config{})
	k := plain.Key("revoked-meanwhile")
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, _ = c.Load(ctx, k, func(context.Context) (*verdict, time.Duration, error) {
			close(started)
			<-release
			return &verdict{Active: true}, time.Minute, nil
		})
	}()
	<-started
	if _, err := c.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-done
	if _, ok := c.Get(ctx, k); ok {
		t.Fatal("a decision loaded before the eviction was cached after it")
	}
}

func TestDeleteFingerprintMemory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newMem(t, Config{})
	k := plain.Key("fp")
	other := plain.Key("other")
	c.Set(ctx, k, &verdict{}, time.Minute)
	c.Set(ctx, other, &verdict{}, time.Minute)
	for _, bad := range []string{"", "*", "0123456789abcde*", k.String(), "zzzzzzzzzzzzzzzz"} {
		if _, err := c.DeleteFingerprint(ctx, bad); err == nil {
			t.Fatalf("fingerprint %q accepted", bad)
		}
	}
	n, err := c.DeleteFingerprint(ctx, k.Fingerprint())
	if err != nil || n != 1 {
		t.Fatalf("DeleteFingerprint = %d, %v", n, err)
	}
	if _, ok := c.Get(ctx, k); ok {
		t.Fatal("still cached")
	}
	if _, ok := c.Get(ctx, other); !ok {
		t.Fatal("unrelated key evicted")
	}
	if _, err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get(ctx, other); ok {
		t.Fatal("Flush left an entry")
	}
}

// Not parallel: it counts the whole process's goroutines.
func TestCloseStopsGoroutines(t *testing.T) {
	srv := startRedis(t)
	before := runtime.NumGoroutine()
	mem, err := New(Config{}, JSONCodec[*verdict]{})
	if err != nil {
		t.Fatal(err)
	}
	shared, err := New(Config{Redis: &RedisConfig{URL: srv.URL()}}, JSONCodec[*verdict]{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []*Cache[*verdict]{mem, shared} {
		k := plain.Key("g")
		c.Set(ctx, k, &verdict{}, time.Minute)
		c.Get(ctx, k)
		_, _, _ = c.Load(ctx, plain.Key("l"), func(context.Context) (*verdict, time.Duration, error) {
			return &verdict{}, time.Minute, nil
		})
	}
	if runtime.NumGoroutine() <= before {
		t.Fatal("expected the caches to run goroutines")
	}
	for _, c := range []*Cache[*verdict]{mem, shared} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal("second Close:", err)
		}
	}
	// go-redis's pool goroutines notice the close on their next tick.
	waitFor(t, 5*time.Second, "goroutines to stop", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// waitFor polls cond every 5ms until it holds, and fails the test if it
// does not within d: for conditions that have no event to wait on.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	waitEvery(t, d, 5*time.Millisecond, what, cond)
}

// waitEvery is waitFor polling every interval, for conditions that cost a
// round trip or a write each time they are checked.
func waitEvery(t testing.TB, d, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	if !eventually(d, interval, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// eventually polls cond every interval until it holds (true) or d has
// passed (false).
func eventually(d, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// LoadLocal caches what it computed, computes nothing on a hit, and keeps
// a value computed across an eviction out of the cache, as Load does.
func TestLoadLocalCachesAndRespectsEvictions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newMem(t, Config{})
	k := plain.Key("local")
	calls := 0
	load := func() (*verdict, time.Duration, error) {
		calls++
		return &verdict{Sub: "dave"}, time.Minute, nil
	}
	for range 3 {
		if v, err := c.LoadLocal(k, load); err != nil || v.Sub != "dave" {
			t.Fatalf("LoadLocal: %v %v", v, err)
		}
	}
	if calls != 1 {
		t.Fatalf("load ran %d times for one key, want 1", calls)
	}
	if _, err := c.LoadLocal(plain.Key("failing"), func() (*verdict, time.Duration, error) {
		return nil, time.Minute, errors.New("no")
	}); err == nil {
		t.Fatal("the load's error was not returned")
	}
	if _, ok := c.Get(ctx, plain.Key("failing")); ok {
		t.Fatal("a failed load was cached")
	}
	k2 := plain.Key("revoked-meanwhile-local")
	v, err := c.LoadLocal(k2, func() (*verdict, time.Duration, error) {
		if _, err := c.Delete(ctx, k2); err != nil {
			t.Fatal(err)
		}
		return &verdict{Active: true}, time.Minute, nil
	})
	if err != nil || !v.Active {
		t.Fatalf("LoadLocal: %v %v", v, err)
	}
	if _, ok := c.Get(ctx, k2); ok {
		t.Fatal("a decision computed across an eviction was cached after it")
	}
}

// Concurrent first LoadLocal callers of one key all get the value stored
// first: one decision per token however many requests bring it at once.
func TestLoadLocalGivesConcurrentCallersOneValue(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := newMem(t, Config{})
		k := plain.Key("burst")
		release := make(chan struct{})
		load := func() (*verdict, time.Duration, error) {
			<-release
			return &verdict{Sub: "erin"}, time.Minute, nil
		}
		const n = 8
		got := make(chan *verdict, n)
		for range n {
			go func() {
				v, _ := c.LoadLocal(k, load)
				got <- v
			}()
		}
		synctest.Wait() // every caller is in its load
		close(release)
		first := <-got
		for range n - 1 {
			if v := <-got; v != first {
				t.Fatal("concurrent callers of one key got different values")
			}
		}
		if v, ok := c.Get(context.Background(), k); !ok || v != first {
			t.Fatal("the value they got is not the cached one")
		}
	})
}
