package caddymodule

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/nodeas"
)

// TestSoakHostileTrafficNeverChangesADecision interleaves, from several
// goroutines, valid and revoked tokens with junk, forged JWTs, JWE-shaped
// tokens and form/query-smuggled second tokens, against an introspection
// route, a JWT route and a hybrid route in one Caddy, while oidc-provider
// (which answers 400 for every JWT-shaped token it is asked about) restarts
// once. There must be no wrong decision, and no 503 for a valid token
// outside the outage (from the stop until the gateway has recovered). Each
// phase ends on what it waits for; the traffic runs for at least
// TOKENGATE_SOAK (default 8s).
func TestSoakHostileTrafficNeverChangesADecision(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	t.Parallel()
	duration := 8 * time.Second
	if d, err := time.ParseDuration(os.Getenv("TOKENGATE_SOAK")); err == nil {
		duration = d
	}
	const jwtResource, opaqueResource = "https://api.tokengate.test", "https://opaque.tokengate.test"
	as := nodeas.Start(t, nodeas.WithResourceServer(opaqueResource, map[string]any{"accessTokenFormat": "opaque"}))
	introspect := fmt.Sprintf("\t\tintrospect {\n\t\t\tclient_id %s\n\t\t\tclient_secret %s\n\t\t\ttimeout 500ms\n\t\t}\n", nodeas.GatewayID, nodeas.GatewaySecret)
	route := func(path, audience, blocks string) string {
		return fmt.Sprintf(`	handle %s {
		bearer_auth {
			issuer %s
			audience %s
			allow_form_token
			allow_query_token
			cache {
				ttl 1s
				negative_ttl 500ms
			}
%s
		}
		respond "ok {http.auth.user.id}"
	}
`, path, as.Issuer(), audience, blocks)
	}
	tc := startCaddy(t, route("/introspect", opaqueResource, introspect)+
		route("/jwt", jwtResource, "\t\t\tjwt\n")+
		route("/hybrid", jwtResource+" "+opaqueResource, introspect+"\t\t\tjwt\n"))

	opaque := func() string { return as.TokenWithResource(t, "svc-a", opaqueResource, "read") }
	signed := func() string { return as.TokenWithResource(t, "svc-a", jwtResource, "read") }
	var validOpaque, validJWT, revoked []string
	for i := 0; i < 10; i++ {
		validOpaque = append(validOpaque, opaque())
		validJWT = append(validJWT, signed())
		tok := opaque()
		as.Revoke(t, "svc-a", tok)
		revoked = append(revoked, tok)
	}
	forgedKey := otherKey(t, "attacker")
	var forged []string
	for i := 0; i < 5; i++ {
		forged = append(forged, mint(t, forgedKey, as.Issuer(), jwtResource, "read", "svc-a", time.Minute, time.Now()))
	}
	invalid := append(append(append([]string{}, revoked...), forged...), junkTokens...)

	type probe struct {
		name    string
		method  string
		path    string
		header  string
		body    string
		valid   bool // a valid token alone: 200, or 503 only in an outage window
		want    int  // for invalid requests: the one right answer
		opaqueQ bool // the valid answer depends on the AS (opaque tokens)
	}
	pick := func(list []string, i int) string { return list[i%len(list)] }
	probes := func(i int) []probe {
		v, j, bad := pick(validOpaque, i), pick(validJWT, i), pick(invalid, i)
		return []probe{
			{"valid opaque, introspection route", http.MethodGet, "/introspect", v, "", true, 0, true},
			{"valid opaque, hybrid route", http.MethodGet, "/hybrid", v, "", true, 0, true},
			{"valid JWT, JWT route", http.MethodGet, "/jwt", j, "", true, 0, false},
			{"valid JWT, hybrid route", http.MethodGet, "/hybrid", j, "", true, 0, false},
			{"invalid, introspection route", http.MethodGet, "/introspect", bad, "", false, 401, false},
			{"invalid, JWT route", http.MethodGet, "/jwt", bad, "", false, 401, false},
			{"invalid, hybrid route", http.MethodGet, "/hybrid", bad, "", false, 401, false},
			{"valid header + smuggled form token", http.MethodPost, "/hybrid", j, "x=1&access%5Ftoken=" + bad, false, 400, false},
			{"valid header + smuggled query token", http.MethodGet, "/hybrid?a=1&access_token=" + bad, j, "", false, 400, false},
			{"valid header + encoded query token", http.MethodGet, "/hybrid?access%5ftoken=" + bad, j, "", false, 400, false},
		}
	}

	var down atomic.Bool       // from the AS stopping until the gateway recovered
	var scriptDone atomic.Bool // the phases below are over
	var abort atomic.Bool      // the test failed: stop now
	var requests, wrong, outage503 atomic.Int64
	stop := time.Now().Add(duration)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; !abort.Load() && (!scriptDone.Load() || time.Now().Before(stop)); i++ {
				ps := probes(i)
				p := ps[i%len(ps)]
				headers := map[string]string{"Authorization": "Bearer " + p.header}
				if p.body != "" {
					headers["Content-Type"] = "application/x-www-form-urlencoded"
				}
				// Read the AS state before and after: a request that
				// overlaps the outage may see it.
				outageBefore := down.Load()
				r := tc.do(p.method, p.path, headers, []byte(p.body))
				outage := outageBefore || down.Load()
				requests.Add(1)
				ok := false
				switch {
				case p.valid && r.status == 200:
					ok = true
				case p.valid && r.status == 503 && p.opaqueQ && outage:
					ok = true
					outage503.Add(1)
				case !p.valid && r.status == p.want:
					ok = true
				case !p.valid && p.want == 401 && r.status == 503 && outage:
					ok = true // an uncached invalid token during the outage: undecided, never accepted
				}
				if !ok && wrong.Add(1) <= 20 { // the first few tell the story
					t.Errorf("%s: status %d (body %q), AS down: %v", p.name, r.status, strings.TrimSpace(r.body), outage)
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
	// The outage lasts until valid opaque tokens whose cached decisions
	// expired (ttl 1s) have been answered 503: the gateway saw it.
	down.Store(true)
	as.Stop()
	waitFor(t, 30*time.Second, 10*time.Millisecond, "valid tokens answered 503 during the outage", func() bool { return outage503.Load() >= 10 })
	// Back up: the outage is over for the workers once the gateway lets a
	// token through that it has to introspect — on both routes that
	// introspect: each has its own circuit breaker, and the hybrid one may
	// let its probe through up to a second after the other.
	as.Restart(t)
	restarted := time.Now()
	fresh := opaque()
	waitFor(t, 10*time.Second, 20*time.Millisecond, "the gateway to recover", func() bool {
		return tc.get("/introspect", "Bearer "+fresh).status == 200 && tc.get("/hybrid", "Bearer "+fresh).status == 200
	})
	down.Store(false)
	t.Logf("gateway recovered %v after the authorization server came back", time.Since(restarted))
	scriptDone.Store(true)
	wg.Wait()

	t.Logf("%d requests, %d wrong decisions, %d answered 503 for valid opaque tokens in the outage window",
		requests.Load(), wrong.Load(), outage503.Load())
	if requests.Load() < 200 {
		t.Fatalf("only %d requests: the soak proves nothing", requests.Load())
	}
}
