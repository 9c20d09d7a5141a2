package claims

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// The compact layout must give back every claim exactly as it came, and
// every field as the claim readers read it.

var layoutCases = map[string]string{
	"typical": `{"iss":"https://as.example.com","sub":"alice","aud":"api","client_id":"app","scope":"read write",` +
		`"iat":1700000000,"nbf":1700000000,"exp":1700003600,"auth_time":1699999000,"acr":"phr","jti":"abc"}`,
	"azp only":           `{"iss":"https://as.example.com","aud":"api","azp":"web","exp":1700003600}`,
	"client_id and azp":  `{"aud":"api","client_id":"app","azp":"web","exp":1700003600}`,
	"empty client_id":    `{"aud":"api","client_id":"","azp":"web","exp":1700003600}`,
	"odd scope spacing":  `{"aud":"api","scope":" read  write ","exp":1700003600}`,
	"scp array":          `{"aud":"api","scp":["read","write admin"],"exp":1700003600}`,
	"scp string":         `{"aud":"api","scp":"read write","exp":1700003600}`,
	"scope array":        `{"aud":"api","scope":["read","write"],"exp":1700003600}`,
	"aud array":          `{"aud":["api","other"],"exp":1700003600}`,
	"aud array of one":   `{"aud":["api"],"exp":1700003600}`,
	"aud not configured": `{"iss":"https://elsewhere.example","aud":"other","exp":1700003600}`,
	"fractional exp":     `{"aud":"api","exp":1700003600.25,"iat":1700000000.5}`,
	"exp as float text":  `{"aud":"api","exp":1.7000036e9}`,
	"exp past 2262":      `{"aud":"api","exp":253402300799,"nbf":0}`,
	"nbf far from exp":   `{"aud":"api","exp":1700003600,"nbf":1}`,
	"no exp":             `{"aud":"api","iat":1700000000,"sub":"bob"}`,
	"escaped strings":    `{"aud":"api","sub":"al\"ice\\u00e9","acr":"\u00e9","exp":1700003600,"we\"ird":1}`,
	"nested and big":     `{"aud":"api","exp":1700003600,"tenant":9007199254740993,"realm_access":{"roles":["a","b"]},"x.y":true,"n":null}`,
	"nothing":            `{}`,
	"bound":              `{"aud":"api","exp":1700003600,"cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}`,
}

func TestDecisionGivesEveryClaimBackExactly(t *testing.T) {
	in := NewInterned("https://as.example.com", []string{"x", "api"})
	for name, js := range layoutCases {
		for _, interned := range []*Interned{nil, in} {
			obj, err := ParseStrictObject([]byte(js))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			d, err := NewDecisionWith(obj, "introspection", interned)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			want := referenceFields(t, obj)
			got := d.Fields()
			if len(obj) == 0 {
				want.Claims = nil
			}
			if !reflect.DeepEqual(got.Claims, want.Claims) {
				t.Errorf("%s: claims\n got %#v\nwant %#v", name, got.Claims, want.Claims)
			}
			got.Claims, want.Claims = nil, nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: fields\n got %+v\nwant %+v", name, got, want)
			}
			for path := range obj {
				if v, ok := d.Claim(path); !ok || !reflect.DeepEqual(v, obj[path]) {
					t.Errorf("%s: Claim(%q) = %#v, %v; want %#v", name, path, v, ok, obj[path])
				}
			}
			if _, ok := d.Claim("absent"); ok {
				t.Errorf("%s: an absent claim was found", name)
			}
			if _, has := obj["cnf"]; has != d.HasConfirmation() {
				t.Errorf("%s: HasConfirmation %v, cnf present %v", name, d.HasConfirmation(), has)
			}
			back := roundTrip(t, d)
			if !reflect.DeepEqual(back.Fields(), d.Fields()) {
				t.Errorf("%s: through JSON\n got %+v\nwant %+v", name, back.Fields(), d.Fields())
			}
		}
	}
}

// referenceFields reads obj with the claim readers one by one, as
// NewDecision did before decisions were compact.
func referenceFields(t *testing.T, obj map[string]any) DecisionFields {
	t.Helper()
	f := DecisionFields{Claims: obj, Source: "introspection"}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	var err error
	f.Subject, err = lenientString(obj, "sub")
	must(err)
	f.ClientID, err = lenientString(obj, "client_id")
	must(err)
	if f.ClientID == "" {
		f.ClientID, err = lenientString(obj, "azp")
		must(err)
	}
	f.Issuer, err = lenientString(obj, "iss")
	must(err)
	f.Audience, err = lenientStringOrList(obj, "aud")
	must(err)
	f.Scopes, err = lenientScopes(obj)
	must(err)
	f.ExpiresAt, err = lenientNumericDate(obj, "exp")
	must(err)
	f.NotBefore, err = lenientNumericDate(obj, "nbf")
	must(err)
	f.IssuedAt, err = lenientNumericDate(obj, "iat")
	must(err)
	f.ACR, err = lenientString(obj, "acr")
	must(err)
	f.AuthTime, err = lenientNumericDate(obj, "auth_time")
	must(err)
	return f
}

func roundTrip(t *testing.T, d *Decision) *Decision {
	t.Helper()
	b, err := json.Marshal(&Verdict{Decision: d})
	if err != nil {
		t.Fatal(err)
	}
	var v Verdict
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v.Decision
}

// TestJWTRulesReadAsTheClaimReadersDo: the JWT path builds its decision
// straight from the token's bytes; it must be the decision the claim
// readers would have built from the parsed claims.
func TestJWTRulesReadAsTheClaimReadersDo(t *testing.T) {
	rules := &JWTRules{Issuer: "https://as.example.com", Audience: []string{"api"}, Leeway: 30 * time.Second,
		Interned: NewInterned("https://as.example.com", []string{"api"})}
	now := time.Unix(1700001000, 0)
	n := 0
	for name, js := range layoutCases {
		if !strings.Contains(js, `"iss"`) && js != "{}" {
			js = `{"iss":"https://as.example.com",` + js[1:]
		}
		checkJWTRulesAgree(t, name, rules, []byte(js), now)
		if _, err := rules.Decision([]byte(js), now); err == nil {
			n++
		}
	}
	if n < 12 {
		t.Fatalf("only %d cases were good JWT claims: the test checks too little", n)
	}
}

func checkJWTRulesAgree(t *testing.T, name string, rules *JWTRules, payload []byte, now time.Time) {
	t.Helper()
	d, err := rules.Decision(payload, now)
	if err != nil {
		return
	}
	obj, err := ParseStrictObject(payload)
	if err != nil {
		t.Fatalf("%s: JWTRules accepted what the strict reader refuses: %v", name, err)
	}
	ref, err := NewDecisionWith(obj, "jwt", rules.Interned)
	if err != nil {
		t.Fatalf("%s: JWTRules accepted what the claim readers refuse: %v", name, err)
	}
	got, want := d.Fields(), ref.Fields()
	if obj["client_id"] == "" {
		// RFC 7662 responses fall back to azp for an empty client_id; a
		// JWT's client_id is what it says.
		want.ClientID = ""
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
	}
	if d.HasConfirmation() != ref.HasConfirmation() {
		t.Errorf("%s: HasConfirmation %v, the claim readers' %v", name, d.HasConfirmation(), ref.HasConfirmation())
	}
	for path := range obj {
		if v, ok := d.Claim(path); !ok || !reflect.DeepEqual(v, obj[path]) {
			t.Errorf("%s: Claim(%q) = %#v, %v; want %#v", name, path, v, ok, obj[path])
		}
	}
}

func FuzzJWTRulesAgreeWithTheClaimReaders(f *testing.F) {
	for _, js := range layoutCases {
		f.Add([]byte(js))
	}
	rules := &JWTRules{Issuer: "https://as.example.com", Audience: []string{"api"}, Leeway: 30 * time.Second,
		Interned: NewInterned("https://as.example.com", []string{"api"})}
	now := time.Unix(1700001000, 0)
	f.Fuzz(func(t *testing.T, payload []byte) {
		checkJWTRulesAgree(t, "fuzz", rules, payload, now)
	})
}

// TestWideDecisionKeepsItsStrings: sub, client_id, scope and acr longer
// than the compact offsets can address go to the extras.
func TestWideDecisionKeepsItsStrings(t *testing.T) {
	long := strings.Repeat("s", 70_000)
	d := DecisionFields{Subject: long, ClientID: "c", Scopes: []string{"a", "b"}, ACR: "x",
		Claims: map[string]any{"sub": long, "k": "v"}}.Build()
	if d.Subject() != long || d.ClientID() != "c" || d.ScopeString() != "a b" || d.ACR() != "x" {
		t.Fatalf("wide decision lost its strings")
	}
	if v, ok := d.Claim("k"); !ok || v != "v" {
		t.Fatalf("Claim(k) = %v, %v", v, ok)
	}
	if v, ok := d.Claim("sub"); !ok || v != long {
		t.Fatal("Claim(sub) lost")
	}
}

// TestDecisionIsSixtyFourBytes pins the size every cached decision pays
// (one allocation of this size plus one for its strings): growing it moves
// it to the next size class for a million decisions.
func TestDecisionIsSixtyFourBytes(t *testing.T) {
	if s := unsafe.Sizeof(Decision{}); s != 64 {
		t.Fatalf("Decision is %d bytes, want 64", s)
	}
}

// BenchmarkJWTRulesDecision is the claims' share of a cold JWT: the
// ten-claim payload read into a compact decision.
func BenchmarkJWTRulesDecision(b *testing.B) {
	payload := []byte(`{"iss":"https://idp.example.com/realms/acme","sub":"f81d4fae-7dec-11d0-a765-000000000001","aud":"https://api.example.com/orders",` +
		`"client_id":"orders-app-1","scope":"openid orders:read orders:write profile","iat":1700000000,"nbf":1700000000,` +
		`"exp":1700003600,"auth_time":1699999940,"jti":"0000000000000000000000000000000000000001"}`)
	rules := &JWTRules{Issuer: "https://idp.example.com/realms/acme", Audience: []string{"https://api.example.com/orders"},
		Leeway: 30 * time.Second, Interned: NewInterned("https://idp.example.com/realms/acme", []string{"https://api.example.com/orders"})}
	now := time.Unix(1700001000, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := rules.Decision(payload, now); err != nil {
			b.Fatal(err)
		}
	}
}
