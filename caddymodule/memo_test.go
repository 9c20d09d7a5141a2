package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tokengate/tokengate/introspect"
)

// TestForwardClaimsPerHandlerOnOneDecision: two routes with different
// forward_claim lists share one validator, so every request of either
// sees the same cached Decision and its one memo. Each must keep getting
// its own headers from it, in any order, and a header the client
// pre-supplied (in either spelling) is removed, whether or not the claim
// gives a value to put in its place.
func TestForwardClaimsPerHandlerOnOneDecision(t *testing.T) {
	t.Parallel()
	mk := func(fcs ...ForwardClaim) *Handler {
		return provisionBench(t, &Handler{Issuer: benchIssuer, Audience: []string{benchAudience}, Scopes: []string{"read"},
			JWT: &JWTConfig{JWKSFile: benchDemoFile(t, "demo-jwks.json")}, ForwardClaims: fcs})
	}
	a := mk(ForwardClaim{Claim: "sub", Header: "X-User"})
	b := mk(ForwardClaim{Claim: "client_id", Header: "x-user"}, ForwardClaim{Claim: "scope", Header: "X-Scope"},
		ForwardClaim{Claim: "nope", Header: "X-Missing"})
	c := mk(ForwardClaim{Claim: "sub", Header: "X-Subject"}) // a's claim list under another header
	if a.entry != b.entry || a.entry != c.entry {
		t.Fatal("the handlers do not share a validator: the test needs one decision for all")
	}
	tok := benchMint(t, "alice")
	d, _, err := a.entry.validator.Validate(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	type want map[string]string // header -> value ("" absent)
	cases := []struct {
		h    *Handler
		want want
	}{
		{a, want{"X-User": "alice", "X-Scope": "forged", "X-Missing": "forged", "X-Subject": "forged"}},
		{b, want{"X-User": "demo-client", "X-Scope": "read write", "X-Missing": "", "X-Subject": "forged"}},
		{c, want{"X-User": "forged", "X-Scope": "forged", "X-Missing": "forged", "X-Subject": "alice"}},
	}
	underscored := "X_User" // as a CGI-style upstream would read X-User; net/http leaves it as sent
	for round := range 3 {
		for i, tc := range cases {
			var got http.Header
			next := caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
				got = r.Header.Clone()
				return nil
			})
			r := benchRequest(tok)
			for _, h := range []string{"X-User", "X-Scope", "X-Missing", "X-Subject"} {
				r.Header.Set(h, "forged")
			}
			r.Header[underscored] = []string{"forged"}
			w := httptest.NewRecorder()
			if err := serveBench(tc.h, r, w, next); err != nil || got == nil {
				t.Fatalf("round %d, handler %d: not let through (%v, %d %s)", round, i, err, w.Code, w.Body)
			}
			for h, v := range tc.want {
				if g := got.Get(h); g != v {
					t.Errorf("round %d, handler %d: %s = %q, want %q", round, i, h, g, v)
				}
			}
			if tc.h != c && got[underscored] != nil {
				t.Errorf("round %d, handler %d: X_User reached the upstream: %q", round, i, got[underscored])
			}
		}
	}
	if d2, _, _ := a.entry.validator.Validate(context.Background(), tok); d2 != d {
		t.Fatal("the decision was not the cached one throughout")
	}
	// a's and c's list (sub) is read from the decision's own field: only
	// b's values are kept with the decision.
	if m := memoOf(d); m.fwd.Load() == nil || m.fwd.Load().next != nil {
		t.Error("want one set of values kept with the decision: b's (sub needs none)")
	}
}

// TestPlaceholdersOverrideEarlierValues: a value an earlier handler set
// for one of the token's placeholders (vars http.auth.user.id …) gives way
// to the token's, and one set after it wins, as with Replacer.Set.
func TestPlaceholdersOverrideEarlierValues(t *testing.T) {
	t.Parallel()
	h := benchJWTHandler(t, 0)
	tok := benchMint(t, "alice")
	var got, later string
	next := caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
		repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		got = repl.ReplaceKnown("{http.auth.user.id}|{http.auth.bearer.scope}|{http.auth.bearer.acr}", "")
		repl.Set("http.auth.user.id", "override")
		later = repl.ReplaceKnown("{http.auth.user.id}", "")
		return nil
	})
	r := benchRequest(tok).WithContext(context.Background())
	repl := caddyhttp.NewTestReplacer(r)
	repl.Set("http.auth.user.id", "earlier")
	repl.Set("http.auth.bearer.acr", "earlier")
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	if got != "alice|read write|" || later != "override" {
		t.Errorf("got %q then %q", got, later)
	}
}

// BenchmarkDecisionMemo is what the memo costs a decision, once: its B/op
// is the memory each used cached decision carries for it (forward_claim
// values for one claim, sub, included).
func BenchmarkDecisionMemo(b *testing.B) {
	h := benchJWTHandler(b, 0)
	d, _, err := h.entry.validator.Validate(context.Background(), benchMint(b, "demo-user"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		m := newDecisionMemo(d).(*decisionMemo)
		_ = m.forwarded(h.fwd)
	}
}

// A bound token's cnf is decoded once per decision, not on every request
// (it is JSON inside the decision's claims); an unbound token costs nothing.
func TestConfirmationIsReadOncePerDecision(t *testing.T) {
	bound := introspect.DecisionFields{Claims: map[string]any{"cnf": map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}}.Build()
	if c := confirmationOf(bound); c == nil || c.jkt != "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" {
		t.Fatalf("confirmation %+v", c)
	}
	if n := testing.AllocsPerRun(100, func() { confirmationOf(bound) }); n != 0 {
		t.Errorf("%v allocations per request for a bound token's cnf: it is decoded again", n)
	}
	unbound := introspect.DecisionFields{Subject: "alice"}.Build()
	if n := testing.AllocsPerRun(100, func() {
		if confirmationOf(unbound) != nil {
			t.Fatal("an unbound token has a confirmation")
		}
	}); n != 0 {
		t.Errorf("%v allocations per request for an unbound token", n)
	}
	notBinding := introspect.DecisionFields{Claims: map[string]any{"cnf": map[string]any{}}}.Build()
	if c := confirmationOf(notBinding); c != nil {
		t.Fatalf("an empty cnf binds: %+v", c)
	}
}
