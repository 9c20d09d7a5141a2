package caddymodule

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testas"
)

// TestSoakMixedTrafficWithOutageAndRotation runs mixed traffic (valid
// opaque, valid JWT, revoked, expired, garbage) through hybrid mode while
// the authorization server goes down, comes back and rotates its signing
// key. There must be no wrong decision: a valid token is rejected only with
// 503, and only from the outage until the gateway has recovered; an invalid
// token is never accepted. The gateway's goroutines and heap must not grow.
// Each phase ends on what it waits for (traffic, 503s from the outage, the
// recovery); the traffic runs for at least TOKENGATE_SOAK (default 12s).
func TestSoakMixedTrafficWithOutageAndRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	t.Parallel()
	duration := 12 * time.Second
	if d, err := time.ParseDuration(os.Getenv("TOKENGATE_SOAK")); err == nil {
		duration = d
	}
	as := testas.Start(t)
	tc := startCaddy(t, jwtSite(as, fmt.Sprintf(`		introspect {
			client_id %s
			client_secret %s
			timeout 500ms
		}
		cache {
			ttl 2s
			negative_ttl 1s
		}`, testas.GatewayID, testas.GatewaySecret)))
	// The policy in jwtSite wants audience svc-jwt and scope read: opaque
	// tokens of a client whose audience is svc-jwt are needed for the
	// introspection path to pass it.
	as.AddClient(testas.Client{ID: "svc-opaque", Secret: "s", Scopes: []string{"read"}, Audience: []string{"svc-jwt"}})

	var valid, invalid []string
	for i := 0; i < 20; i++ {
		valid = append(valid, as.Token(t, "svc-opaque", "read"), as.Token(t, "svc-jwt", "read"))
	}
	for i := 0; i < 10; i++ {
		tok := as.Token(t, "svc-opaque", "read")
		as.Revoke(t, "svc-opaque", tok)
		invalid = append(invalid, tok, fmt.Sprintf("garbage-%d", i), as.Token(t, "svc-a", "read"))
	}
	as.SetClockOffset(-time.Hour)
	for i := 0; i < 5; i++ {
		invalid = append(invalid, as.Token(t, "svc-opaque", "read"))
	}
	as.SetClockOffset(0)

	// Warm up, then take the baseline.
	for _, tok := range valid {
		if r := tc.get("/", "Bearer "+tok); r.status != 200 {
			t.Fatalf("warm-up: %d %s", r.status, r.body)
		}
	}
	baseG, baseHeap := tc.proc.runtimeStats(t)

	var outage atomic.Bool     // from the AS stopping until the gateway recovered
	var scriptDone atomic.Bool // the phases below are over
	var abort atomic.Bool      // the test failed: stop now
	var requests, wrong, unavailable atomic.Int64
	stop := time.Now().Add(duration)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; !abort.Load() && (!scriptDone.Load() || time.Now().Before(stop)); i++ {
				isValid := i%2 == 0
				var tok string
				if isValid {
					tok = valid[i%len(valid)]
				} else {
					tok = invalid[i%len(invalid)]
				}
				// A request that overlaps the outage may see it.
				inOutage := outage.Load()
				r := tc.get("/", "Bearer "+tok)
				inOutage = inOutage || outage.Load()
				requests.Add(1)
				switch {
				case isValid && r.status == 200:
				case isValid && r.status == 503 && inOutage:
					unavailable.Add(1)
				case !isValid && r.status != 200:
				default:
					if wrong.Add(1) <= 20 { // the first few tell the story
						t.Errorf("wrong decision: valid=%v status=%d body=%s", isValid, r.status, r.body)
					}
				}
			}
		}()
	}
	defer func() { // if a phase below fails the test
		abort.Store(true)
		wg.Wait()
	}()
	// Steady traffic first.
	waitFor(t, 30*time.Second, 10*time.Millisecond, "200 requests of steady traffic", func() bool { return requests.Load() >= 200 })
	// The outage lasts until valid tokens whose cached decisions expired
	// (ttl 2s) have been answered 503: the gateway saw it.
	outage.Store(true)
	as.Stop()
	waitFor(t, 30*time.Second, 10*time.Millisecond, "valid tokens answered 503 during the outage", func() bool { return unavailable.Load() >= 10 })
	// Back up: the outage is over for the workers once the gateway lets a
	// token through that it has to introspect (its breaker probes again).
	as.Restart(t)
	restarted := time.Now()
	probe := as.Token(t, "svc-opaque", "read")
	waitFor(t, 10*time.Second, 20*time.Millisecond, "the gateway to recover", func() bool { return tc.get("/", "Bearer "+probe).status == 200 })
	outage.Store(false)
	t.Logf("gateway recovered %v after the authorization server came back", time.Since(restarted))
	// A new signing key: its tokens are accepted, the old ones stay valid.
	as.RotateKey(true)
	fresh := as.Token(t, "svc-jwt", "read")
	if r := tc.get("/", "Bearer "+fresh); r.status != 200 {
		t.Errorf("token of the rotated-in key: %d", r.status)
	}
	scriptDone.Store(true)
	wg.Wait()

	t.Logf("%d requests, %d wrong, %d answered 503 during the outage", requests.Load(), wrong.Load(), unavailable.Load())
	if requests.Load() < 100 {
		t.Fatalf("only %d requests: the soak proves nothing", requests.Load())
	}
	// Idle connections and timers settle: the goroutines come back down.
	tc.client.CloseIdleConnections()
	var g int
	var heap uint64
	if !eventually(10*time.Second, 100*time.Millisecond, func() bool {
		g, heap = tc.proc.runtimeStats(t)
		return g <= baseG+20
	}) {
		t.Errorf("the gateway's goroutines grew from %d to %d", baseG, g)
	}
	t.Logf("gateway goroutines %d -> %d, heap %d -> %d KiB", baseG, g, baseHeap>>10, heap>>10)
	if heap > baseHeap*2+16<<20 {
		t.Errorf("heap grew from %d to %d bytes", baseHeap, heap)
	}
}
