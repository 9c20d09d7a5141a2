package introspect

import (
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	claimspkg "github.com/tokengate/tokengate/introspect/claims"
)

// claimsOf decodes a claims set the way the verifier and the introspection
// reader do (numbers as json.Number).
func claimsOf(t *testing.T, js string) *Decision {
	t.Helper()
	claims, err := claimspkg.ParseStrictObject([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	d, err := claimspkg.NewDecision(claims, "jwt")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestClaimRequirementMatchesEqualOrContained(t *testing.T) {
	const claims = `{
		"groups": ["staff", "admin"],
		"roles": [],
		"tenant": 42,
		"tenant_str": "42",
		"big": 12345678901234567890123,
		"ratio": 0.5,
		"verified": true,
		"nothing": null,
		"org": {"id": "acme", "unit": {"code": 7}},
		"https://example.com/claims.team": "blue",
		"nested_list": [["admin"]],
		"object_list": [{"name": "admin"}]
	}`
	d := claimsOf(t, claims)
	for _, tc := range []struct {
		name   string
		path   string
		values []string
		reason string // "" = passes
	}{
		{"string equal", "tenant_str", []string{"42"}, ""},
		{"string is compared exactly", "tenant_str", []string{"042", "42.0"}, "claim_value"},
		{"one of several values", "org.id", []string{"globex", "acme"}, ""},
		{"array contains the value", "groups", []string{"admin"}, ""},
		{"array contains one of the values", "groups", []string{"ops", "staff"}, ""},
		{"array without the value", "groups", []string{"ops"}, "claim_value"},
		{"empty array", "roles", []string{"admin"}, "claim_value"},
		{"number equals its decimal string", "tenant", []string{"42"}, ""},
		{"number equals another spelling of itself", "tenant", []string{"42.0", "4.2e1"}, ""},
		{"number is not a different number", "tenant", []string{"43", "4.2"}, "claim_value"},
		{"number is not a non-number string", "tenant", []string{"042", "forty-two", "+42", " 42"}, "claim_value"},
		{"number beyond float64 exactly", "big", []string{"12345678901234567890123"}, ""},
		{"number beyond float64: last digit matters", "big", []string{"12345678901234567890124"}, "claim_value"},
		{"fraction", "ratio", []string{"0.50"}, ""},
		{"boolean", "verified", []string{"true"}, ""},
		{"boolean false is not true", "verified", []string{"false"}, "claim_value"},
		{"nested path", "org.unit.code", []string{"7"}, ""},
		{"nested path, wrong value", "org.unit.code", []string{"8"}, "claim_value"},
		{"claim name with dots", "https://example.com/claims.team", []string{"blue"}, ""},
		{"missing claim", "department", []string{"sales"}, "missing_claim"},
		{"missing nested claim", "org.unit.name", []string{"x"}, "missing_claim"},
		{"path through a non-object", "tenant.id", []string{"42"}, "missing_claim"},
		{"null is absent", "nothing", []string{"null", ""}, "missing_claim"},
		{"an object is not a value", "org", []string{"acme", `{"id":"acme"}`}, "claim_value"},
		{"nested arrays are not searched", "nested_list", []string{"admin"}, "claim_value"},
		{"objects in an array are not values", "object_list", []string{"admin"}, "claim_value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Policy{Claims: []ClaimRequirement{{Path: tc.path, Values: tc.values}}}
			e := p.Authorize(d)
			switch {
			case tc.reason == "" && e != nil:
				t.Fatalf("refused: %v (%s)", e, e.Reason)
			case tc.reason == "":
				return
			case e == nil:
				t.Fatal("passed, want a refusal")
			case e.Reason != tc.reason || e.Code != CodeInsufficientScope || e.Scope != "":
				t.Fatalf("got %s %s scope %q, want insufficient_scope %s and no scope", e.Code, e.Reason, e.Scope, tc.reason)
			}
			if !strings.Contains(e.Description, tc.path) {
				t.Errorf("description %q does not name the claim %s", e.Description, tc.path)
			}
		})
	}
}

// A refusal names the claim, never the token's value for it nor the values
// the route requires: neither goes to the client or into the log.
func TestClaimRefusalNeverShowsValues(t *testing.T) {
	d := claimsOf(t, `{"tenant": "tenant-secret-7", "groups": ["group-secret-1"]}`)
	for _, r := range []ClaimRequirement{
		{Path: "tenant", Values: []string{"required-secret-9"}},
		{Path: "groups", Values: []string{"required-secret-9"}},
		{Path: "absent", Values: []string{"required-secret-9"}},
	} {
		e := (&Policy{Claims: []ClaimRequirement{r}}).Authorize(d)
		if e == nil {
			t.Fatalf("%s passed", r.Path)
		}
		for _, s := range []string{e.Description, e.Hint, e.Error()} {
			if strings.Contains(s, "secret") {
				t.Errorf("%s: %q shows a value", r.Path, s)
			}
		}
	}
}

// Every requirement must hold; the scopes are judged first (the policy's
// order is "for us at all", then "may it do this").
func TestClaimRequirementsAllMustHold(t *testing.T) {
	d := claimsOf(t, `{"groups": ["admin"], "tenant": 42, "scope": "read"}`)
	p := Policy{Scopes: []string{"read"}, Claims: []ClaimRequirement{
		{Path: "groups", Values: []string{"admin"}},
		{Path: "tenant", Values: []string{"42"}},
	}}
	if e := p.Authorize(d); e != nil {
		t.Fatalf("both hold: %v", e)
	}
	p.Claims = append(p.Claims, ClaimRequirement{Path: "tenant", Values: []string{"7"}})
	if e := p.Authorize(d); e == nil || e.Reason != "claim_value" {
		t.Fatalf("third requirement fails: got %v", e)
	}
	p.Scopes = []string{"write"}
	if e := p.Authorize(d); e == nil || e.Reason != "missing_scope" {
		t.Fatalf("the missing scope is reported first: got %v", e)
	}
}

// A decision read back from the shared Redis tier must match exactly as
// the fresh one did: numbers keep every digit.
func TestClaimRequirementHoldsForADecisionReadFromRedis(t *testing.T) {
	fresh := claimsOf(t, `{"tenant": 9007199254740993}`)
	b, err := verdictCodec{}.Marshal(&Verdict{Decision: fresh})
	if err != nil {
		t.Fatal(err)
	}
	back, err := verdictCodec{}.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{Claims: []ClaimRequirement{{Path: "tenant", Values: []string{"9007199254740993"}}}}
	for name, d := range map[string]*Decision{"fresh": fresh, "from Redis": back.Decision} {
		if e := p.Authorize(d); e != nil {
			t.Errorf("%s: %v", name, e)
		}
	}
	// The Decision reads its own claims exactly, whoever decodes it: plain
	// encoding/json would otherwise make a float64 of the id, another number.
	var plain Verdict
	if err := json.Unmarshal(b, &plain); err != nil {
		t.Fatal(err)
	}
	if e := p.Authorize(plain.Decision); e != nil {
		t.Errorf("decoded with plain encoding/json: %v", e)
	}
}

func TestCanonicalDecimal(t *testing.T) {
	for in, want := range map[string]string{
		"42": "42e2", "42.0": "42e2", "4.2e1": "42e2", "4.2E+1": "42e2", "420e-1": "42e2",
		"0": "0", "-0": "0", "0.000": "0", "0e5": "0",
		"-1.5": "-15e1", "0.05": "5e-1", "5e-2": "5e-1", "100": "1e3",
		"12345678901234567890123": "12345678901234567890123e23",
		"1e999999999":             "1e1000000000",
		// not JSON numbers
		"": "", "-": "", "042": "", "+1": "", " 1": "", "1 ": "", "1.": "", ".5": "",
		"1e": "", "1e+": "", "0x1": "", "1/2": "", "NaN": "", "Infinity": "", "1e99999999999999999999": "",
	} {
		if got := canonicalDecimal(in); got != want {
			t.Errorf("canonicalDecimal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClaimRequirementCheck(t *testing.T) {
	for _, r := range []ClaimRequirement{
		{Path: "", Values: []string{"x"}},
		{Path: ".groups", Values: []string{"x"}},
		{Path: "org.", Values: []string{"x"}},
		{Path: "org..id", Values: []string{"x"}},
		{Path: "groups"},
	} {
		if err := r.Check(); err == nil {
			t.Errorf("%+v passed Check", r)
		}
	}
	if err := (ClaimRequirement{Path: "realm_access.roles", Values: []string{"admin"}}).Check(); err != nil {
		t.Error(err)
	}
}

// Two spellings have the same canonical form exactly when they are the same
// number, and only JSON numbers have one.
func FuzzCanonicalDecimal(f *testing.F) {
	for _, s := range []string{"42", "42.0", "4.2e1", "-0", "0.05", "1e400", "042", "1.", "12345678901234567890"} {
		f.Add(s, "42")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ca, cb := canonicalDecimal(a), canonicalDecimal(b)
		for _, p := range []struct{ s, c string }{{a, ca}, {b, cb}} {
			isNumber := json.Valid([]byte(p.s)) && p.s != "" && strings.Trim(p.s, " \t\r\n") == p.s &&
				(p.s[0] == '-' || '0' <= p.s[0] && p.s[0] <= '9')
			if p.c != "" && !isNumber {
				t.Fatalf("%q is not a JSON number but has canonical form %q", p.s, p.c)
			}
			if p.c == "" && isNumber && !strings.ContainsAny(p.s, "eE") {
				t.Fatalf("JSON number %q has no canonical form", p.s)
			}
		}
		if ca == "" || cb == "" || len(a) > 40 || len(b) > 40 || strings.ContainsAny(a+b, "eE") {
			return
		}
		ra, _ := new(big.Rat).SetString(a)
		rb, _ := new(big.Rat).SetString(b)
		if (ra.Cmp(rb) == 0) != (ca == cb) {
			t.Fatalf("%q (%s) and %q (%s): equal numbers %v, equal forms %v", a, ca, b, cb, ra.Cmp(rb) == 0, ca == cb)
		}
	})
}
