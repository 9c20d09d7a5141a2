package caddymodule

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testas"
)

func jwtSite(as *testas.Server, extra string) string {
	// zitadel types its access tokens "JWT", not at+jwt: the typ option
	// exists for servers like it.
	return fmt.Sprintf(`	bearer_auth {
		issuer %s
		audience svc-jwt
		scopes read
		jwt {
			typ JWT
			refresh_interval 200ms
		}
%s
	}
	respond "ok {http.auth.user.id} {http.auth.bearer.claims.client_id}"`, as.Issuer(), extra)
}

func TestJWTFromRealAuthorizationServerIsVerifiedLocally(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, jwtSite(as, ""))
	tok := as.Token(t, "svc-jwt", "read")
	for i := 0; i < 10; i++ {
		if r := tc.get("/", "Bearer "+tok); r.status != 200 || r.body != "ok svc-jwt svc-jwt" {
			t.Fatalf("got %d %q", r.status, r.body)
		}
	}
	if n := as.IntrospectionCalls(); n != 0 {
		t.Errorf("introspection calls = %d, want 0 in local JWT mode", n)
	}
	if n := as.JWKSCalls(); n != 1 {
		t.Errorf("JWKS fetches = %d, want 1 (at load time)", n)
	}
}

func TestKeyRotationIsPickedUpWithoutReload(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, jwtSite(as, ""))
	oldTok := as.Token(t, "svc-jwt", "read")
	unusedOldTok := as.Token(t, "svc-jwt", "read")
	if r := tc.get("/", "Bearer "+oldTok); r.status != 200 {
		t.Fatalf("old key: %d", r.status)
	}
	time.Sleep(250 * time.Millisecond) // past refresh_interval since the load-time fetch

	as.RotateKey(true)
	newTok := as.Token(t, "svc-jwt", "read")
	if r := tc.get("/", "Bearer "+newTok); r.status != 200 {
		t.Fatalf("new key, no reload: %d %s", r.status, r.body)
	}

	time.Sleep(250 * time.Millisecond) // past refresh_interval since the refresh the new kid caused
	as.RotateKey(false)                // the AS drops every earlier key
	newest := as.Token(t, "svc-jwt", "read")
	if r := tc.get("/", "Bearer "+newest); r.status != 200 {
		t.Fatalf("newest key: %d %s", r.status, r.body)
	}
	r := tc.get("/", "Bearer "+unusedOldTok)
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error_description="unknown signing key"`) {
		t.Fatalf("token of a removed key: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	// The old token accepted (and cached) earlier is dropped with its key.
	if r := tc.get("/", "Bearer "+oldTok); r.status != 401 {
		t.Fatalf("cached token of a removed key: %d, want 401", r.status)
	}
}

func TestUnknownKidFloodCausesBoundedJWKSFetches(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, jwtSite(as, ""))
	good := as.Token(t, "svc-jwt", "read")
	parts := strings.Split(good, ".")
	before := as.JWKSCalls()
	for i := 0; i < 300; i++ {
		// A header naming a kid the AS never had, re-using a real
		// payload and signature.
		hdr := b64url(fmt.Sprintf(`{"alg":"RS256","kid":"made-up-%d","typ":"JWT"}`, i))
		tok := hdr + "." + parts[1] + "." + parts[2]
		if r := tc.get("/", "Bearer "+tok); r.status != 401 {
			t.Fatalf("made-up kid %d: %d", i, r.status)
		}
	}
	// refresh_interval is 200ms: the loop takes well under a few seconds,
	// so a handful of fetches at most.
	if n := as.JWKSCalls() - before; n > 10 {
		t.Errorf("JWKS fetches during the flood = %d, want a handful", n)
	}
}

func TestHybridModeIntrospectsOpaqueTokensAndVerifiesJWTsLocally(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, jwtSite(as, fmt.Sprintf(`		introspect {
			client_id %s
			client_secret %s
		}`, testas.GatewayID, testas.GatewaySecret)))
	// The audience policy applies to both paths; svc-a's opaque tokens
	// are for svc-a, so allow only the JWT client's audience here and
	// check the opaque path separately below.
	if r := tc.get("/", "Bearer "+as.Token(t, "svc-jwt", "read")); r.status != 200 {
		t.Fatalf("JWT: %d %s", r.status, r.body)
	}
	if n := as.IntrospectionCalls(); n != 0 {
		t.Fatalf("JWT was introspected (%d calls)", n)
	}
	r := tc.get("/", "Bearer "+as.Token(t, "svc-a", "read"))
	if n := as.IntrospectionCalls(); n != 1 {
		t.Fatalf("opaque token: introspection calls = %d, want 1", n)
	}
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), "audience mismatch") {
		t.Fatalf("opaque token for another audience: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
}

func TestIntrospectJWTCatchesRevokedJWTs(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, jwtSite(as, fmt.Sprintf(`		introspect {
			client_id %s
			client_secret %s
			introspect_jwt
		}`, testas.GatewayID, testas.GatewaySecret)))
	tok := as.Token(t, "svc-jwt", "read")
	as.Revoke(t, "svc-jwt", tok)
	r := tc.get("/", "Bearer "+tok)
	if r.status != 401 || as.IntrospectionCalls() != 1 {
		t.Fatalf("revoked JWT: %d, introspection calls %d", r.status, as.IntrospectionCalls())
	}
}

func TestTokenOfANewKeyIsAcceptedOnceTheRefreshGateOpens(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, jwtSite(as, ""))
	if r := tc.get("/", "Bearer "+as.Token(t, "svc-jwt", "read")); r.status != 200 {
		t.Fatal(r.status)
	}
	as.RotateKey(true)
	tok := as.Token(t, "svc-jwt", "read")
	// Within refresh_interval (200ms) of the load-time fetch the new kid
	// may be refused; it must not stay refused once a refresh is allowed.
	tc.get("/", "Bearer "+tok)
	time.Sleep(300 * time.Millisecond) // past refresh_interval (a clock condition)
	if r := tc.get("/", "Bearer "+tok); r.status != 200 {
		t.Fatalf("token of the new key after the refresh gate opened: %d %s", r.status, r.header.Get("WWW-Authenticate"))
	}
}
