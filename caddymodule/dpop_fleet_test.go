package caddymodule

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/nodeas"
	"github.com/tokengate/tokengate/internal/redistest"
)

// TestDPoPReplayIsRefusedAcrossTheFleetThroughRedis: two gateway processes
// sharing cache { redis } behind one public name (the Host header): a proof
// used at one is refused at the other (RFC 9449 §11.1, SET NX PX), while a
// fresh proof passes at either.
func TestDPoPReplayIsRefusedAcrossTheFleetThroughRedis(t *testing.T) {
	as := nodeas.Start(t)
	client := nodeas.StartDPoPClient(t)
	srv := redistest.Start(t)
	site := nodeSite(as, "\t\tcache {\n\t\t\tredis "+srv.URL()+"\n\t\t}")
	a, b := startCaddyProcess(t, site), startCaddyProcess(t, site)
	key := client.NewKey(t, "ES256")
	token := as.RequestToken(t, nodeas.TokenRequest{ClientID: "svc-a", Scopes: []string{"read"},
		DPoP: client.Proof(t, key, nodeas.ProofOptions{Method: "POST", URL: as.TokenURL()})}).AccessToken
	// The fleet's public name is A's address: B is reached through it too.
	public := strings.TrimPrefix(a.Base, "http://")
	htu := a.Base + "/"
	send := func(base, proof string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/", nil)
		req.Host = public
		req.Header.Set("Authorization", "DPoP "+token)
		req.Header.Set("DPoP", proof)
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	fresh := func() string {
		return client.Proof(t, key, nodeas.ProofOptions{Method: "GET", URL: htu, AccessToken: token})
	}
	if st, body := send(b.Base, fresh()); st != http.StatusOK {
		t.Fatalf("fresh proof at B: %d %s", st, body)
	}
	p := fresh()
	if st, body := send(a.Base, p); st != http.StatusOK {
		t.Fatalf("proof at A: %d %s", st, body)
	}
	if st, body := send(b.Base, p); st != http.StatusUnauthorized || !strings.Contains(body, "invalid_dpop_proof") {
		t.Errorf("the same proof at B: %d %s, want 401 invalid_dpop_proof", st, body)
	}
	if st, body := send(b.Base, fresh()); st != http.StatusOK {
		t.Errorf("a new proof at B after the replay: %d %s", st, body)
	}
}
