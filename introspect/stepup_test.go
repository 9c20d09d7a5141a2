package introspect

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"
)

// RFC 9470 step-up: a good token whose authentication misses acr_values or
// max_age is refused with insufficient_user_authentication, carrying what
// is required; anything else in the policy is judged first.
func TestStepUpPolicy(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	gold := []string{"urn:example:gold", "phr"}
	for _, tc := range []struct {
		name   string
		p      Policy
		d      *Decision
		code   Code   // "" = allowed
		reason string // for rejections
	}{
		{"no step-up configured: any authentication passes", Policy{}, DecisionFields{}.Build(), "", ""},
		{"acr listed", Policy{ACRValues: gold}, DecisionFields{ACR: "phr"}.Build(), "", ""},
		{"acr missing", Policy{ACRValues: gold}, DecisionFields{}.Build(), CodeInsufficientUserAuthentication, "acr_missing"},
		{"acr not listed", Policy{ACRValues: gold}, DecisionFields{ACR: "urn:example:silver"}.Build(), CodeInsufficientUserAuthentication, "acr_not_accepted"},
		{"acr compared exactly", Policy{ACRValues: gold}, DecisionFields{ACR: "PHR"}.Build(), CodeInsufficientUserAuthentication, "acr_not_accepted"},
		{"auth_time recent", Policy{MaxAge: time.Hour}, DecisionFields{AuthTime: now.Add(-59 * time.Minute)}.Build(), "", ""},
		{"auth_time missing", Policy{MaxAge: time.Hour}, DecisionFields{}.Build(), CodeInsufficientUserAuthentication, "auth_time_missing"},
		{"auth_time too old", Policy{MaxAge: time.Hour}, DecisionFields{AuthTime: now.Add(-61 * time.Minute)}.Build(), CodeInsufficientUserAuthentication, "auth_time_too_old"},
		{"auth_time within the leeway", Policy{MaxAge: time.Hour, Leeway: 30 * time.Second}, DecisionFields{AuthTime: now.Add(-time.Hour - 20*time.Second)}.Build(), "", ""},
		{"auth_time past the leeway", Policy{MaxAge: time.Hour, Leeway: 30 * time.Second}, DecisionFields{AuthTime: now.Add(-time.Hour - 40*time.Second)}.Build(), CodeInsufficientUserAuthentication, "auth_time_too_old"},
		{"both required, acr fails first", Policy{ACRValues: gold, MaxAge: time.Hour}, DecisionFields{ACR: "x", AuthTime: now}.Build(), CodeInsufficientUserAuthentication, "acr_not_accepted"},
		{"both required, auth_time fails", Policy{ACRValues: gold, MaxAge: time.Hour}, DecisionFields{ACR: "phr", AuthTime: now.Add(-2 * time.Hour)}.Build(), CodeInsufficientUserAuthentication, "auth_time_too_old"},
		{"both met", Policy{ACRValues: gold, MaxAge: time.Hour}, DecisionFields{ACR: "phr", AuthTime: now.Add(-time.Minute)}.Build(), "", ""},
		// Step-up is asked only of tokens that pass everything else: a new
		// login would not fix these, so the client is told them first.
		{"a scope failure stays 403 insufficient_scope", Policy{Scopes: []string{"read"}, ACRValues: gold, MaxAge: time.Hour}, DecisionFields{}.Build(), CodeInsufficientScope, "missing_scope"},
		{"an any_scope failure stays 403 insufficient_scope", Policy{AnyScope: []string{"a", "b"}, ACRValues: gold}, DecisionFields{Scopes: []string{"c"}}.Build(), CodeInsufficientScope, "missing_scope"},
		{"a client failure stays 403 unauthorized_client", Policy{Clients: []string{"c1"}, MaxAge: time.Hour}, DecisionFields{ClientID: "c2"}.Build(), CodeUnauthorizedClient, "client_not_allowed"},
		{"an audience failure stays 401 invalid_token", Policy{Audience: []string{"api"}, ACRValues: gold}, DecisionFields{Audience: []string{"other"}}.Build(), CodeInvalidToken, "audience"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			p.Now = clock
			e := p.Authorize(tc.d)
			if tc.code == "" {
				if e != nil {
					t.Fatalf("refused: %v", e)
				}
				return
			}
			if e == nil {
				t.Fatalf("allowed, want %s (%s)", tc.code, tc.reason)
			}
			if e.Code != tc.code || e.Reason != tc.reason {
				t.Fatalf("got %s (%s), want %s (%s)", e.Code, e.Reason, tc.code, tc.reason)
			}
			if e.Code == CodeInsufficientUserAuthentication {
				if !slices.Equal(e.ACRValues, p.ACRValues) || e.MaxAge != p.MaxAge {
					t.Errorf("asks for acr_values %q max_age %s, want %q %s", e.ACRValues, e.MaxAge, p.ACRValues, p.MaxAge)
				}
				if !errors.Is(e, ErrInsufficientUserAuthentication) {
					t.Error("does not match ErrInsufficientUserAuthentication")
				}
			}
		})
	}
}

// The policy reads the clock of each call: a decision that met max_age
// when it was cached stops meeting it as time passes.
func TestStepUpPolicyIsJudgedOnEveryCall(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	p := Policy{MaxAge: 10 * time.Minute, Now: func() time.Time { return now }}
	d := DecisionFields{AuthTime: now.Add(-9 * time.Minute)}.Build()
	if e := p.Authorize(d); e != nil {
		t.Fatalf("fresh: %v", e)
	}
	now = now.Add(2 * time.Minute)
	if e := p.Authorize(d); e == nil || e.Reason != "auth_time_too_old" {
		t.Fatalf("two minutes later: %v, want auth_time_too_old", e)
	}
}

func TestMaxAgeSecondsRoundsUp(t *testing.T) {
	for d, want := range map[time.Duration]int64{time.Hour: 3600, 90 * time.Second: 90, 1500 * time.Millisecond: 2} {
		if got := MaxAgeSeconds(d); got != want {
			t.Errorf("MaxAgeSeconds(%s) = %d, want %d", d, got, want)
		}
	}
}

func TestCheckStepUp(t *testing.T) {
	if err := CheckStepUp([]string{"urn:mace:incommon:iap:silver", "phr"}, time.Hour); err != nil {
		t.Errorf("good values refused: %v", err)
	}
	for _, bad := range []string{"two words", `q"uote`, `back\slash`, "", "é"} {
		if err := CheckStepUp([]string{bad}, 0); err == nil {
			t.Errorf("acr value %q accepted", bad)
		}
	}
	if err := CheckStepUp(nil, -time.Second); err == nil {
		t.Error("negative max_age accepted")
	}
}

// 403 insufficient_scope names every scope the route needs, so that a
// client asking for exactly that gets a token that passes.
func TestInsufficientScopeNamesEveryRequiredScope(t *testing.T) {
	p := Policy{Scopes: []string{"read", "write"}, AnyScope: []string{"a", "b", "a"}}
	for _, d := range []*Decision{DecisionFields{Scopes: []string{"a"}}.Build(), DecisionFields{Scopes: []string{"read", "write"}}.Build()} {
		e := p.Authorize(d)
		if e == nil || e.Code != CodeInsufficientScope || e.Scope != "read write a b" {
			t.Errorf("granted %q: %+v, want insufficient_scope with scope %q", d.Scopes(), e, "read write a b")
		}
	}
}

// acr and auth_time survive the shared Redis tier, which stores decisions
// as JSON. (The token paths read them strictly: see the asclient and jwt
// packages' TestStepUpClaimsAreReadStrictly.)
func TestStepUpClaimsSurviveTheSharedTier(t *testing.T) {
	at := time.Date(2025, 6, 1, 11, 59, 0, 0, time.UTC).Unix()
	in := DecisionFields{ACR: "phr", AuthTime: time.Unix(at, 0).UTC()}.Build()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Decision
	if err := json.Unmarshal(b, &out); err != nil || out.ACR() != in.ACR() || !out.AuthTime().Equal(in.AuthTime()) {
		t.Fatalf("round trip: acr %q auth_time %s, %v", out.ACR(), out.AuthTime(), err)
	}
}
