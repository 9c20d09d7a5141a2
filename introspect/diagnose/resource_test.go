package diagnose

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testas"
	"github.com/tokengate/tokengate/introspect"
)

// The resource metadata checks, against a stand-in for the gateway that
// serves a document (the caddymodule tests run them against the real one).

// metadataServer serves doc(base) at every path, or status when set.
func metadataServer(t *testing.T, status int, doc func(base string) []byte) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc(srv.URL))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func runWithMetadata(t *testing.T, as *testas.Server, m *introspect.ResourceMetadata) *Block {
	t.Helper()
	cfg := introspect.Config{Issuer: as.Issuer(), Audience: []string{m.Resource}, Introspect: gateway()}
	b := Run(context.Background(), Target{Where: Where{Name: "test"}, Issuer: as.Issuer(), Config: cfg, ResourceMetadata: m}, Options{})
	t.Cleanup(func() {
		if t.Failed() {
			rep := NewReport("test", "")
			rep.Add(b)
			var buf strings.Builder
			rep.WriteText(&buf)
			t.Log("\n" + buf.String())
		}
	})
	return b
}

func TestDoctorResourceMetadataServedAndAuthorizationServersDiscovered(t *testing.T) {
	as := testas.Start(t)
	var m *introspect.ResourceMetadata
	srv := metadataServer(t, 0, func(string) []byte { return m.Document() })
	m = &introspect.ResourceMetadata{Resource: srv.URL + "/mcp", AuthorizationServers: []string{as.Issuer()},
		BearerMethodsSupported: []string{"header"}}
	b := runWithMetadata(t, as, m)
	checkIn(t, b, CheckResourceMetadata, StatusPass, "resource "+srv.URL+"/mcp is the audience enforced; document at "+srv.URL+"/.well-known/oauth-protected-resource/mcp")
	checkIn(t, b, CheckResourceMetadataServed, StatusPass, "serves this block's document")
	// The block's issuer was discovered by New already: not asked again.
	checkIn(t, b, CheckAuthorizationServers, StatusPass, "discovery answers: "+as.Issuer()+" ("+as.DiscoveryURL()+")")
	if !b.OK {
		t.Error("block not OK")
	}
	if n := as.Requests(as.DiscoveryPath()); n != 1 {
		t.Errorf("%d discovery requests, want 1 (New's)", n)
	}
}

func TestDoctorResourceMetadataFailures(t *testing.T) {
	as := testas.Start(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	t.Run("another document is served", func(t *testing.T) {
		srv := metadataServer(t, 0, func(base string) []byte {
			return introspect.ResourceMetadata{Resource: base + "/other", AuthorizationServers: []string{as.Issuer()}, BearerMethodsSupported: []string{"header"}}.Document()
		})
		b := runWithMetadata(t, as, &introspect.ResourceMetadata{Resource: srv.URL + "/mcp", AuthorizationServers: []string{as.Issuer()}, BearerMethodsSupported: []string{"header"}})
		checkIn(t, b, CheckResourceMetadataServed, StatusFail, `serves another document: resource "`+srv.URL+`/other" (this block: "`+srv.URL+`/mcp")`)
		if b.OK {
			t.Error("block OK")
		}
	})
	t.Run("the path is not answered", func(t *testing.T) {
		srv := metadataServer(t, http.StatusUnauthorized, nil)
		b := runWithMetadata(t, as, &introspect.ResourceMetadata{Resource: srv.URL + "/mcp", AuthorizationServers: []string{as.Issuer()}})
		checkIn(t, b, CheckResourceMetadataServed, StatusFail, "HTTP 401")
	})
	t.Run("nothing answers: a warning", func(t *testing.T) {
		b := runWithMetadata(t, as, &introspect.ResourceMetadata{Resource: deadURL + "/mcp", AuthorizationServers: []string{as.Issuer()}})
		checkIn(t, b, CheckResourceMetadataServed, StatusWarn, "could not fetch "+deadURL+"/.well-known/oauth-protected-resource/mcp")
		if !b.OK {
			t.Error("a gateway not running yet fails the block")
		}
	})
	t.Run("an authorization server does not answer discovery", func(t *testing.T) {
		b := runWithMetadata(t, as, &introspect.ResourceMetadata{Resource: deadURL, AuthorizationServers: []string{as.Issuer(), deadURL + "/realms/x"}})
		checkIn(t, b, CheckAuthorizationServers, StatusFail, "discovering "+deadURL+"/realms/x")
	})
	t.Run("the issuer is not listed", func(t *testing.T) {
		other := testas.Start(t)
		b := runWithMetadata(t, as, &introspect.ResourceMetadata{Resource: deadURL, AuthorizationServers: []string{other.Issuer()}})
		checkIn(t, b, CheckAuthorizationServers, StatusWarn, "the issuer "+as.Issuer()+" is not listed")
	})
	t.Run("the resource is not the audience", func(t *testing.T) {
		m := &introspect.ResourceMetadata{Resource: deadURL + "/mcp", AuthorizationServers: []string{as.Issuer()}}
		cfg := introspect.Config{Issuer: as.Issuer(), Audience: []string{"api"}, Introspect: gateway()}
		b := Run(context.Background(), Target{Where: Where{Name: "test"}, Config: cfg, ResourceMetadata: m}, Options{})
		checkIn(t, b, CheckResourceMetadata, StatusFail, "is not one of audience (api)")
		checkIn(t, b, CheckResourceMetadataServed, StatusSkip, "the metadata is invalid")
	})
}

// With a token, a step-up refusal is explained: what the token says about
// the user's authentication, what the route requires, and what to do.
func TestDoctorExplainsAStepUpRefusal(t *testing.T) {
	as := testas.Start(t, testas.WithClients(testas.Client{ID: "silver", Secret: "s", Scopes: []string{"read"},
		Claims: map[string]any{"acr": "urn:example:silver"}}))
	cfg := introspect.Config{Issuer: as.Issuer(), Introspect: gateway()}
	p := introspect.Policy{ACRValues: []string{"urn:example:gold"}, MaxAge: time.Hour}
	b := Run(context.Background(), Target{Where: Where{Name: "test"}, Config: cfg, Policy: p},
		Options{Token: as.Token(t, "silver", "read"), HaveToken: true})
	checkIn(t, b, CheckTokenPolicy, StatusFail, `insufficient_user_authentication: the user's authentication (acr) is not one this API accepts (acr "urn:example:silver", auth_time none; acr_values urn:example:gold, max_age 1h0m0s)`)
	for _, c := range b.Checks {
		if c.Name == CheckTokenPolicy && !strings.Contains(c.Hint, "RFC 9470") {
			t.Errorf("hint %q", c.Hint)
		}
	}
}
