package introspect

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// An eviction that lands while a stale_grace re-check is in flight must win:
// the answer the server gave before the operator evicted the token is not
// stored after the eviction.
func TestRevalidationDoesNotWriteBackAnEvictedDecision(t *testing.T) {
	var active atomic.Bool
	active.Store(true)
	var calls atomic.Int64
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var block atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		answer := fmt.Sprintf(`{"active":%v,"client_id":"c"}`, active.Load())
		if block.Load() {
			entered <- struct{}{}
			<-release
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, answer)
	}))
	defer srv.Close()

	v, err := New(Config{Introspect: &IntrospectOptions{Endpoint: srv.URL, ClientID: "gw", ClientSecret: "s"},
		Cache: CacheOptions{TTL: 50 * time.Millisecond, NegativeTTL: time.Minute, StaleGrace: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	if _, _, err := v.Validate(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond) // past ttl: the next request re-checks

	block.Store(true)
	done := make(chan error, 1)
	go func() { _, _, err := v.Validate(ctx, "tok"); done <- err }()
	<-entered // the re-check is at the server, which still says active
	block.Store(false)
	if _, err := v.Evict(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	active.Store(false) // the operator evicted because the token was revoked
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the in-flight re-check: %v", err)
	}

	before := calls.Load()
	if _, _, err := v.Validate(ctx, "tok"); err == nil {
		t.Fatal("after the eviction the revoked token was accepted from the cache")
	}
	if n := calls.Load() - before; n != 1 {
		t.Errorf("introspection calls after the eviction = %d, want 1", n)
	}
}

// A token the server chokes on (5xx for that token alone, e.g. a firewall in
// front of it refusing that string) must not open the breaker for everyone:
// the canary shows the server answers, so the 503 is that caller's only.
// When every call fails, the breaker still opens.
func TestA5xxForOneTokenDoesNotOpenTheBreaker(t *testing.T) {
	var down atomic.Bool
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_ = r.ParseForm()
		tok := r.PostForm.Get("token")
		if down.Load() || tok == "poison" {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"active":%v,"client_id":"c"}`, tok == "good")
	}))
	defer srv.Close()
	v, err := New(Config{Introspect: &IntrospectOptions{Endpoint: srv.URL, ClientID: "gw", ClientSecret: "s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		_, _, err := v.Validate(ctx, "poison")
		if e := AsError(err); e == nil || e.Code != CodeUnavailable || e.Reason != ReasonServerErrorOnToken {
			t.Fatalf("poison token, try %d: %v, want 503 %s", i, err, ReasonServerErrorOnToken)
		}
	}
	if _, _, err := v.Validate(ctx, "good"); err != nil {
		t.Fatalf("a good token after 20 poison tokens: %v (the breaker must stay closed)", err)
	}
	// A real outage still opens it: the canary fails too (it is probed at
	// most once a second, so this may take that long), then calls stop.
	down.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		_, _, err := v.Validate(ctx, fmt.Sprintf("t%d", i))
		if AsError(err).Reason == "circuit_open" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the breaker did not open during an outage: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := calls.Load()
	if _, _, err := v.Validate(ctx, "t-last"); AsError(err).Reason != "circuit_open" || calls.Load() != before {
		t.Fatalf("open breaker: %v with %d more calls, want circuit_open and none", err, calls.Load()-before)
	}
}
