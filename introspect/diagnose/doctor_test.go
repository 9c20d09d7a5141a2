package diagnose

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/testas"
	"github.com/tokengate/tokengate/introspect"
)

// The cases the CLI's golden files do not reach: failures after discovery,
// filed under the check they belong to, and the clock with no discovery
// or introspection answer to read.

func TestMain(m *testing.M) {
	// The in-process authorization server logs every route through the
	// global slog logger; keep test output readable.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

func run(t *testing.T, cfg introspect.Config, opts Options) *Block {
	t.Helper()
	b := Run(context.Background(), Target{Where: Where{Name: "test"}, Issuer: cfg.Issuer, Config: cfg}, opts)
	t.Cleanup(func() {
		if t.Failed() {
			rep := NewReport("test", "")
			rep.Add(b)
			var buf bytes.Buffer
			rep.WriteText(&buf)
			t.Log("\n" + buf.String())
		}
	})
	return b
}

func checkIn(t *testing.T, b *Block, name string, status Status, detail string) {
	t.Helper()
	for _, c := range b.Checks {
		if c.Name == name {
			if c.Status != status || !strings.Contains(c.Detail, detail) {
				t.Errorf("%s: %s %q, want %s containing %q", name, c.Status, c.Detail, status, detail)
			}
			return
		}
	}
	t.Errorf("no %s check", name)
}

func gateway() *introspect.IntrospectOptions {
	return &introspect.IntrospectOptions{ClientID: testas.GatewayID, ClientSecret: testas.GatewaySecret}
}

// An unreachable JWKS is the jwks check's failure; the same validator still
// proves the credentials.
func TestDoctorJWKSDownStillChecksCredentials(t *testing.T) {
	as := testas.Start(t)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer down.Close()
	b := run(t, introspect.Config{Issuer: as.Issuer(), Audience: []string{"api"}, Introspect: gateway(),
		JWT: &introspect.JWTOptions{JWKSURL: down.URL}}, Options{})
	checkIn(t, b, CheckDiscovery, StatusPass, "issuer matches")
	checkIn(t, b, CheckJWKS, StatusFail, "fetching the JWKS from "+down.URL+": unexpected HTTP status 503")
	checkIn(t, b, CheckCredentials, StatusPass, "active:false")
	if b.OK {
		t.Error("block OK with its JWKS down")
	}
}

// New failing after discovery: the failure goes to the check it belongs
// to, discovery still says it worked, and nothing else claims to have run.
func TestDoctorFilesANewFailureUnderItsCheck(t *testing.T) {
	as := testas.Start(t)
	i := gateway()
	i.AuthMethod, i.PrivateKeyFile = "private_key_jwt", filepath.Join(t.TempDir(), "missing.pem")
	b := run(t, introspect.Config{Issuer: as.Issuer(), Introspect: i}, Options{Token: "some-token", HaveToken: true})
	checkIn(t, b, CheckDiscovery, StatusPass, "metadata of "+as.Issuer()+" found")
	checkIn(t, b, CheckCredentials, StatusFail, "private_key")
	checkIn(t, b, CheckTokenValidation, StatusFail, "cannot load this block")
	checkIn(t, b, CheckDecision, StatusSkip, "cannot load this block")
}

// With the keys at a configured jwks_url nothing is discovered, so no
// answer of the gateway's own calls carries a Date the doctor can time:
// it asks the issuer itself. The token is explained with the same
// validator; without a handler to ask, the decision is skipped.
func TestDoctorClockWithoutDiscoveryAsksTheIssuer(t *testing.T) {
	as := testas.Start(t)
	cfg := introspect.Config{Issuer: as.Issuer(), Audience: []string{"svc-jwt"},
		JWT: &introspect.JWTOptions{JWKSURL: as.JWKSURL(), Types: []string{"JWT"}}}
	b := run(t, cfg, Options{Token: as.Token(t, "svc-jwt", "read"), HaveToken: true})
	checkIn(t, b, CheckDiscovery, StatusSkip, "not needed")
	checkIn(t, b, CheckJWKS, StatusPass, "1 key at "+as.JWKSURL())
	checkIn(t, b, CheckClock, StatusPass, "(Date of "+as.Issuer()+")")
	checkIn(t, b, CheckTokenValidation, StatusPass, "verified locally against "+as.JWKSURL())
	checkIn(t, b, CheckDecision, StatusSkip, "no handler")
	if n := as.Requests(as.DiscoveryPath()); n != 0 {
		t.Errorf("%d discovery requests for a block that needs none", n)
	}
}
