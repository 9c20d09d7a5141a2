package introspect

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/tokengate/tokengate/introspect/internal/jwttest"
)

const (
	issuerA = "https://idp-a.example.com"
	issuerB = "https://idp-b.example.com/realms/partner"
	issuerC = "https://idp-c.example.com"
)

// introspectionServer answers every introspection call with an active
// token of issuer iss, and counts the calls.
func introspectionServer(t testing.TB, iss string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"active":true,"client_id":"opaque-client","iss":%q,"aud":"api","exp":%d}`, iss, time.Now().Add(time.Hour).Unix())
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// keyFile writes a JWK Set with the public half of key (kid) and returns
// its path: validators built from files make no network call at all.
func keyFile(t testing.TB, key *rsa.PrivateKey, kid string) string {
	t.Helper()
	b, err := json.Marshal(jwttest.Set(t, jwttest.PublicJWK(t, key, kid, jwa.RS256)))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), kid+".json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestValidator(t testing.TB, cfg Config) *Validator {
	t.Helper()
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// tokenOf signs RFC 9068 claims for iss with key, naming kid.
func tokenOf(t testing.TB, key *rsa.PrivateKey, kid, iss string) string {
	t.Helper()
	now := time.Now()
	return jwttest.Sign(t, "RS256", key, jwttest.Header("RS256", kid), map[string]any{
		"iss": iss, "aud": "api", "sub": "user", "client_id": "c",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	})
}

// twoIssuers: A verifies JWTs with its key (hybrid: A also introspects,
// so that anything wrongly sent to A would show as a call), B verifies
// JWTs with its own key.
func twoIssuers(t testing.TB) (is *Issuers, a, b *Validator, aCalls *atomic.Int64) {
	t.Helper()
	k := jwttest.NewKeys(t)
	srv, calls := introspectionServer(t, issuerA)
	a = newTestValidator(t, Config{Issuer: issuerA, Audience: []string{"api"},
		JWT:        &JWTOptions{JWKSFile: keyFile(t, k.RSA1, "key-a")},
		Introspect: &IntrospectOptions{Endpoint: srv.URL, ClientID: "gw", ClientSecret: "s"}})
	b = newTestValidator(t, Config{Issuer: issuerB, Audience: []string{"api"},
		JWT: &JWTOptions{JWKSFile: keyFile(t, k.RSA2, "key-b")}})
	is, err := NewIssuers(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return is, a, b, calls
}

// issuerOf names v in a failure message.
func issuerOf(v *Validator) string {
	if v == nil {
		return "no validator"
	}
	return "the validator of " + v.Issuer()
}

func TestIssuersRouteEachJWTToItsOwnIssuer(t *testing.T) {
	k := jwttest.NewKeys(t)
	is, a, b, calls := twoIssuers(t)
	for _, tc := range []struct {
		name   string
		token  string
		want   *Validator
		reason string // "" = accepted
	}{
		{"A's token", tokenOf(t, k.RSA1, "key-a", issuerA), a, ""},
		{"B's token", tokenOf(t, k.RSA2, "key-b", issuerB), b, ""},
		// The forgeries: A's key (which A's side of the trust holds) signs
		// a token that claims to be B's. Judged by B alone, with B's keys:
		// A's kid is unknown there, and under B's kid A's signature fails.
		// Had it gone to A (whose key did sign it), A's verifier would
		// answer "issuer mismatch" instead: the reason says who judged.
		{"B's iss, A's key and kid", tokenOf(t, k.RSA1, "key-a", issuerB), b, "unknown_key"},
		{"B's iss and kid, A's key", tokenOf(t, k.RSA1, "key-b", issuerB), b, "signature"},
		{"A's iss, B's key and kid", tokenOf(t, k.RSA2, "key-b", issuerA), a, "unknown_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, rerr := is.Route(tc.token)
			if rerr != nil || v != tc.want {
				t.Fatalf("routed to %s (%v), want %s", issuerOf(v), rerr, tc.want.Issuer())
			}
			d, _, got, err := is.Validate(context.Background(), tc.token)
			if got != tc.want {
				t.Fatalf("validated by %s, want %s", issuerOf(got), tc.want.Issuer())
			}
			switch {
			case tc.reason == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.reason == "" && d.Issuer() != tc.want.Issuer():
				t.Fatalf("decision of issuer %q", d.Issuer())
			case tc.reason != "" && (err == nil || AsError(err).Reason != tc.reason):
				t.Fatalf("got %v, want invalid_token %s", err, tc.reason)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d introspection calls at A for JWTs it verifies locally", n)
	}
}

// A JWT naming an issuer the route does not trust is refused by the router
// itself: no validator sees it, so no key set refreshes and no
// introspection endpoint is asked — not even that of a hybrid issuer,
// which, alone on a route, would introspect a foreign JWT.
func TestIssuersRefuseAnUntrustedIssuerWithoutAnyCall(t *testing.T) {
	k := jwttest.NewKeys(t)
	is, _, _, calls := twoIssuers(t)
	for name, tok := range map[string]string{
		"another issuer":                tokenOf(t, k.RSA3, "key-c", issuerC),
		"another issuer with A's key":   tokenOf(t, k.RSA1, "key-a", issuerC),
		"a trusted issuer, one more /":  tokenOf(t, k.RSA1, "key-a", issuerA+"/"),
		"no iss":                        jwttest.Sign(t, "RS256", k.RSA1, jwttest.Header("RS256", "key-a"), map[string]any{"aud": "api", "exp": time.Now().Add(time.Minute).Unix()}),
		"iss not a string":              jwttest.Sign(t, "RS256", k.RSA1, jwttest.Header("RS256", "key-a"), map[string]any{"iss": []string{issuerA}, "aud": "api"}),
		"payload not JSON":              jwttest.B64JSON(t, jwttest.Header("RS256", "key-a")) + "." + jwttest.B64JSON(t, "not json") + ".c2ln",
		"an empty iss (the single one)": tokenOf(t, k.RSA1, "key-a", ""),
	} {
		t.Run(name, func(t *testing.T) {
			v, rerr := is.Route(tok)
			if v != nil || rerr == nil || rerr.Code != CodeInvalidToken || rerr.Reason != "issuer_not_trusted" || rerr.Description != "issuer not trusted" {
				t.Fatalf("routed to %s (%v), want invalid_token issuer not trusted", issuerOf(v), rerr)
			}
			d, key, got, err := is.Validate(context.Background(), tok)
			if d != nil || got != nil || AsError(err).Reason != "issuer_not_trusted" || key.Fingerprint() == "" {
				t.Fatalf("Validate: decision %v by %s: %v", d, issuerOf(got), err)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d introspection calls for tokens of untrusted issuers, want 0", n)
	}
}

// Opaque tokens carry no iss: the first issuer with introspection judges
// them, whichever it is in the list.
func TestIssuersSendOpaqueTokensToTheFirstIntrospection(t *testing.T) {
	k := jwttest.NewKeys(t)
	srvB, callsB := introspectionServer(t, issuerB)
	srvC, callsC := introspectionServer(t, issuerC)
	a := newTestValidator(t, Config{Issuer: issuerA, Audience: []string{"api"}, JWT: &JWTOptions{JWKSFile: keyFile(t, k.RSA1, "key-a")}})
	b := newTestValidator(t, Config{Issuer: issuerB, Introspect: &IntrospectOptions{Endpoint: srvB.URL, ClientID: "gw", ClientSecret: "s"}})
	c := newTestValidator(t, Config{Issuer: issuerC, Introspect: &IntrospectOptions{Endpoint: srvC.URL, ClientID: "gw", ClientSecret: "s"}})
	is, err := NewIssuers(a, b, c)
	if err != nil {
		t.Fatal(err)
	}
	d, _, v, err := is.Validate(context.Background(), "an-opaque-token")
	if err != nil || v != b || d.Issuer() != issuerB {
		t.Fatalf("opaque token: %v by %s, want B's introspection", err, issuerOf(v))
	}
	if callsB.Load() != 1 || callsC.Load() != 0 {
		t.Errorf("introspection calls B %d, C %d; want 1, 0", callsB.Load(), callsC.Load())
	}

	// A JWT of an introspection-only issuer is introspected by that
	// issuer, not the first one.
	if _, _, v, err := is.Validate(context.Background(), tokenOf(t, k.RSA3, "key-c", issuerC)); err != nil || v != c || callsC.Load() != 1 {
		t.Errorf("C's JWT: %v by %s, %d calls at C", err, issuerOf(v), callsC.Load())
	}

	// No introspection anywhere: an opaque token is refused as a route
	// with only jwt refuses it.
	jwtOnly, err := NewIssuers(a, newTestValidator(t, Config{Issuer: issuerB, Audience: []string{"api"}, JWT: &JWTOptions{JWKSFile: keyFile(t, k.RSA2, "key-b")}}))
	if err != nil {
		t.Fatal(err)
	}
	if v, rerr := jwtOnly.Route("an-opaque-token"); v != nil || rerr == nil || rerr.Reason != "malformed" {
		t.Errorf("opaque token without introspection: %s %v", issuerOf(v), rerr)
	}
}

// One issuer: Issuers changes nothing. A hybrid validator still sends a JWT
// of another issuer to its introspection endpoint, as it always has.
func TestIssuersWithOneIssuerIsAPassThrough(t *testing.T) {
	k := jwttest.NewKeys(t)
	srv, calls := introspectionServer(t, issuerA)
	a := newTestValidator(t, Config{Issuer: issuerA, Audience: []string{"api"},
		JWT:        &JWTOptions{JWKSFile: keyFile(t, k.RSA1, "key-a")},
		Introspect: &IntrospectOptions{Endpoint: srv.URL, ClientID: "gw", ClientSecret: "s"}})
	is, err := NewIssuers(a)
	if err != nil {
		t.Fatal(err)
	}
	tok := tokenOf(t, k.RSA3, "key-c", issuerC)
	if v, rerr := is.Route(tok); v != a || rerr != nil {
		t.Fatalf("routed to %s (%v)", issuerOf(v), rerr)
	}
	if a.PathOf(tok) != PathIntrospection {
		t.Fatalf("path %v", a.PathOf(tok))
	}
	// The test server calls every token active: its verdict is the one.
	if _, _, _, err := is.Validate(context.Background(), tok); err != nil || calls.Load() != 1 {
		t.Errorf("foreign JWT on a single hybrid issuer: %v after %d calls; want the introspection's verdict after 1 call", err, calls.Load())
	}
}

func TestNewIssuersRefusesAmbiguousSets(t *testing.T) {
	k := jwttest.NewKeys(t)
	a := newTestValidator(t, Config{Issuer: issuerA, Audience: []string{"api"}, JWT: &JWTOptions{JWKSFile: keyFile(t, k.RSA1, "key-a")}})
	a2 := newTestValidator(t, Config{Issuer: issuerA, Audience: []string{"other"}, JWT: &JWTOptions{JWKSFile: keyFile(t, k.RSA2, "key-b")}})
	srv, _ := introspectionServer(t, "")
	noIss := newTestValidator(t, Config{Introspect: &IntrospectOptions{Endpoint: srv.URL, ClientID: "gw", ClientSecret: "s"}})
	for name, vs := range map[string][]*Validator{
		"none":                     nil,
		"the same issuer twice":    {a, a2},
		"an issuer without a name": {a, noIss},
		"nil":                      {a, nil},
	} {
		if _, err := NewIssuers(vs...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewIssuers(noIss); err != nil {
		t.Errorf("one validator without an issuer: %v", err)
	}
}

// BenchmarkIssuersRoute is what routing costs a route with several issuers
// on every request, cached or not: the JWT's iss is read before any cache
// (each issuer has its own). One issuer costs nothing (pass-through).
func BenchmarkIssuersRoute(b *testing.B) {
	k := jwttest.NewKeys(b)
	is, _, want, _ := twoIssuers(b)
	tok := tokenOf(b, k.RSA2, "key-b", issuerB)
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := is.Route(tok); v != want {
			b.Fatal("routed elsewhere")
		}
	}
}

// TestIssuersCacheNeverOverridesTheRoute: Validate looks the issuers'
// caches up before reading a JWT's iss, but a decision found there is used
// only if it proves the route. Here A's validator (shared with a route
// that trusts A alone, which introspects JWTs of other issuers) holds a
// good introspection decision for a JWT that names B: with both issuers
// trusted the token is still B's to judge, with B's keys, and B refuses
// A's key. A's own JWT and B's own JWT are answered from their caches.
func TestIssuersCacheNeverOverridesTheRoute(t *testing.T) {
	k := jwttest.NewKeys(t)
	is, a, b, calls := twoIssuers(t)
	onlyA, err := NewIssuers(a)
	if err != nil {
		t.Fatal(err)
	}
	forged := tokenOf(t, k.RSA1, "key-a", issuerB)
	d, _, v, err := onlyA.Validate(context.Background(), forged)
	if err != nil || v != a || d.Source() != "introspection" || calls.Load() != 1 {
		t.Fatalf("setup: A alone should introspect the token and accept it: %v %v %d", err, issuerOf(v), calls.Load())
	}
	for range 2 {
		_, _, v, err = is.Validate(context.Background(), forged)
		if v != b || AsError(err) == nil || AsError(err).Reason != "unknown_key" {
			t.Fatalf("judged by %s (%v), want B's unknown_key", issuerOf(v), err)
		}
	}
	for _, tc := range []struct {
		token string
		want  *Validator
	}{
		{tokenOf(t, k.RSA1, "key-a", issuerA), a},
		{tokenOf(t, k.RSA2, "key-b", issuerB), b},
	} {
		first, _, v, err := is.Validate(context.Background(), tc.token)
		if err != nil || v != tc.want {
			t.Fatalf("first: %v by %s", err, issuerOf(v))
		}
		again, _, v, err := is.Validate(context.Background(), tc.token)
		if err != nil || v != tc.want || again != first {
			t.Fatalf("cached: %v by %s, same decision %v", err, issuerOf(v), again == first)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("introspection calls = %d, want 1", calls.Load())
	}
}

// BenchmarkIssuersValidateWarm is a trusted issuer's cached JWT through
// Validate: found in its cache without its iss being read.
func BenchmarkIssuersValidateWarm(b *testing.B) {
	k := jwttest.NewKeys(b)
	is, _, want, _ := twoIssuers(b)
	tok := tokenOf(b, k.RSA2, "key-b", issuerB)
	ctx := context.Background()
	if _, _, v, err := is.Validate(ctx, tok); err != nil || v != want {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, v, _ := is.Validate(ctx, tok); v != want {
			b.Fatal("routed elsewhere")
		}
	}
}
