package caddymodule

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testas"
)

// TestSoakMixedTrafficWithOutageAndRotation runs mixed traffic (valid
// opaque, valid JWT, revoked, expired, garbage) through hybrid mode while
// the authorization server restarts and rotates its signing key. There must
// be no wrong decision: a valid token is rejected only with 503 during the
// outage, and an invalid token is never accepted. Goroutines and heap must
// not grow. TOKENGATE_SOAK=3m makes it longer (default 12s).
func TestSoakMixedTrafficWithOutageAndRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
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
	baseG, baseHeap := runtimeStats()

	var outage atomic.Bool
	var outageEnded atomic.Int64 // unix nanos
	var requests, wrong, unavailable atomic.Int64
	stop := time.Now().Add(duration)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(stop); i++ {
				isValid := i%2 == 0
				var tok string
				if isValid {
					tok = valid[i%len(valid)]
				} else {
					tok = invalid[i%len(invalid)]
				}
				r := tc.get("/", "Bearer "+tok)
				requests.Add(1)
				switch {
				case isValid && r.status == 200:
				case isValid && r.status == 503 && (outage.Load() || time.Since(time.Unix(0, outageEnded.Load())) < 1500*time.Millisecond):
					unavailable.Add(1) // the outage window (plus breaker recovery)
				case !isValid && r.status != 200:
				default:
					wrong.Add(1)
					t.Errorf("wrong decision: valid=%v status=%d body=%s", isValid, r.status, r.body)
				}
			}
		}()
	}
	time.Sleep(duration / 3)
	outage.Store(true)
	as.Stop()
	time.Sleep(time.Second)
	as.Restart(t)
	outage.Store(false)
	outageEnded.Store(time.Now().UnixNano())
	time.Sleep(duration / 6)
	as.RotateKey(true) // new kid for new tokens; old tokens stay valid
	fresh := as.Token(t, "svc-jwt", "read")
	if r := tc.get("/", "Bearer "+fresh); r.status != 200 {
		t.Errorf("token of the rotated-in key: %d", r.status)
	}
	wg.Wait()

	t.Logf("%d requests, %d wrong, %d answered 503 during the outage window", requests.Load(), wrong.Load(), unavailable.Load())
	if requests.Load() < 100 {
		t.Fatalf("only %d requests: the soak proves nothing", requests.Load())
	}
	// Let idle connections and timers settle, then compare.
	tc.client.CloseIdleConnections()
	time.Sleep(500 * time.Millisecond)
	g, heap := runtimeStats()
	if g > baseG+20 {
		t.Errorf("goroutines grew from %d to %d", baseG, g)
	}
	if heap > baseHeap*2+16<<20 {
		t.Errorf("heap grew from %d to %d bytes", baseHeap, heap)
	}
}

func runtimeStats() (goroutines int, heap uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapAlloc
}
