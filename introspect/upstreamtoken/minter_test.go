package upstreamtoken

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/tokengate/tokengate/introspect"
)

const (
	testIssuer   = "https://gateway.test"
	testAudience = "orders-service"
)

// testKey is a generated private key written to a file, as an operator
// would give it.
type testKey struct {
	name, file string
	alg        string
	wantKID    string // "" means: the RFC 7638 thumbprint
	public     crypto.PublicKey
}

// writeKeys writes one key of each supported kind: RSA (PKCS#1 PEM), EC
// P-256 (SEC1 PEM), Ed25519 (PKCS#8 PEM) and an EC JWK with its own kid.
func writeKeys(t testing.TB) []testKey {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecJWKKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	jk, err := jwk.FromRaw(ecJWKKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = jk.Set(jwk.KeyIDKey, "gw-2026-01")
	jkJSON, err := json.Marshal(jk)
	if err != nil {
		t.Fatal(err)
	}
	return []testKey{
		{"RSA", write("rsa.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})), "RS256", "", &rsaKey.PublicKey},
		{"EC", write("ec.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})), "ES256", "", &ecKey.PublicKey},
		{"Ed25519", write("ed25519.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})), "EdDSA", "", edKey.Public()},
		{"EC JWK with kid", write("ec.jwk", jkJSON), "ES256", "gw-2026-01", &ecJWKKey.PublicKey},
	}
}

func thumbprint(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	k, err := jwk.FromRaw(pub)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock    { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

func newMinter(t testing.TB, o Options) *Minter {
	t.Helper()
	if o.Issuer == "" {
		o.Issuer = testIssuer
	}
	if o.Audience == nil {
		o.Audience = []string{testAudience}
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func decision(exp time.Time, claims map[string]any) *introspect.Decision {
	return introspect.DecisionFields{Subject: "alice", ClientID: "web-app", Scopes: []string{"orders:read", "orders:write"},
		Audience: []string{"gateway-api"}, Issuer: "https://as.test", ExpiresAt: exp, Claims: claims, Source: "introspection"}.Build()
}

// TestMintedTokensVerifyAgainstThePublishedJWKS verifies a minted token the
// way an upstream would, with a real JOSE library given only the JWKS the
// gateway publishes, for every key type.
func TestMintedTokensVerifyAgainstThePublishedJWKS(t *testing.T) {
	for _, k := range writeKeys(t) {
		t.Run(k.name, func(t *testing.T) {
			clk := newClock(time.Now())
			m := newMinter(t, Options{SigningKeyFile: k.file, Now: clk.now})
			callerExp := clk.now().Add(time.Hour).Truncate(time.Second)
			tok, err := m.Mint(decision(callerExp, map[string]any{"acr": "urn:mace:incommon:iap:silver", "auth_time": json.Number("1767225600")}))
			if err != nil {
				t.Fatal(err)
			}
			set, err := jwk.Parse(m.JWKS())
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := jwt.Parse([]byte(tok.JWT), jwt.WithKeySet(set), jwt.WithIssuer(testIssuer), jwt.WithAudience(testAudience), jwt.WithClock(jwt.ClockFunc(clk.now)))
			if err != nil {
				t.Fatalf("the upstream could not verify the token: %v", err)
			}
			msg, err := jws.Parse([]byte(tok.JWT))
			if err != nil {
				t.Fatal(err)
			}
			h := msg.Signatures()[0].ProtectedHeaders()
			wantKID := k.wantKID
			if wantKID == "" {
				wantKID = thumbprint(t, k.public)
			}
			if h.Type() != "at+jwt" || h.Algorithm().String() != k.alg || h.KeyID() != wantKID {
				t.Errorf("header typ %q alg %q kid %q, want at+jwt %s %s", h.Type(), h.Algorithm(), h.KeyID(), k.alg, wantKID)
			}
			if parsed.Subject() != "alice" || parsed.JwtID() != tok.ID || tok.ID == "" {
				t.Errorf("sub %q jti %q (token ID %q)", parsed.Subject(), parsed.JwtID(), tok.ID)
			}
			if got := parsed.Expiration().Sub(parsed.IssuedAt()); got != DefaultTTL {
				t.Errorf("exp − iat = %v, want %v", got, DefaultTTL)
			}
			pc := parsed.PrivateClaims()
			if pc["client_id"] != "web-app" || pc["scope"] != "orders:read orders:write" || pc["acr"] != "urn:mace:incommon:iap:silver" || pc["auth_time"] != float64(1767225600) {
				t.Errorf("claims %v", pc)
			}
			if _, ok := pc["cnf"]; ok {
				t.Errorf("cnf copied although the caller's token had none")
			}
		})
	}
}

// privateMembers are the JWK members of private keys (RFC 7518 §6.2.2,
// §6.3.2, RFC 8037 §2): none may ever be published.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// TestJWKSHasOnlyPublicMembers: the published set carries the public halves
// of both the signing and the next key, with kid, alg and use, and not one
// private member, for RSA, EC and Ed25519 keys.
func TestJWKSHasOnlyPublicMembers(t *testing.T) {
	keys := writeKeys(t)
	for i, k := range keys {
		next := keys[(i+1)%len(keys)]
		t.Run(k.name, func(t *testing.T) {
			m := newMinter(t, Options{SigningKeyFile: k.file, NextSigningKeyFile: next.file})
			var set struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal(m.JWKS(), &set); err != nil {
				t.Fatal(err)
			}
			if len(set.Keys) != 2 {
				t.Fatalf("%d keys, want the signing and the next key", len(set.Keys))
			}
			st := m.Settings()
			for j, want := range []struct{ kid, alg string }{{st.KeyID, k.alg}, {st.NextKeyID, next.alg}} {
				jk := set.Keys[j]
				for _, p := range privateMembers {
					if _, ok := jk[p]; ok {
						t.Errorf("key %d publishes the private member %q", j, p)
					}
				}
				if jk["kid"] != want.kid || jk["alg"] != want.alg || jk["use"] != "sig" {
					t.Errorf("key %d: kid %v alg %v use %v, want %s %s sig", j, jk["kid"], jk["alg"], jk["use"], want.kid, want.alg)
				}
			}
			if st.KeyID == st.NextKeyID || st.NextKeyID == "" {
				t.Errorf("kids %q and %q", st.KeyID, st.NextKeyID)
			}
		})
	}
}

// TestExpIsNeverPastTheCallersExp: exp is iat + ttl, or the caller token's
// exp when that is sooner; a caller token past its exp (accepted within
// the leeway) gets invalid_token rather than a token born expired.
func TestExpIsNeverPastTheCallersExp(t *testing.T) {
	keys := writeKeys(t)
	start := time.Unix(1_800_000_000, 250_000_000)
	cases := []struct {
		name      string
		callerExp time.Time
		wantExp   time.Time
	}{
		{"no exp: the ttl", time.Time{}, time.Unix(1_800_000_000+60, 0)},
		{"exp far ahead: the ttl", start.Add(time.Hour), time.Unix(1_800_000_000+60, 0)},
		{"exp sooner: the caller's exp", time.Unix(1_800_000_000+20, 0), time.Unix(1_800_000_000+20, 0)},
		{"exp in a second", time.Unix(1_800_000_001, 0), time.Unix(1_800_000_001, 0)},
	}
	m := newMinter(t, Options{SigningKeyFile: keys[1].file, Now: func() time.Time { return start }})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok, err := m.Mint(decision(c.callerExp, nil))
			if err != nil {
				t.Fatal(err)
			}
			if !tok.ExpiresAt.Equal(c.wantExp) || !tok.IssuedAt.Equal(time.Unix(1_800_000_000, 0)) {
				t.Errorf("iat %v exp %v, want iat %v exp %v", tok.IssuedAt.Unix(), tok.ExpiresAt.Unix(), 1_800_000_000, c.wantExp.Unix())
			}
			_, claims, _ := introspect.UnverifiedJWT(tok.JWT)
			if got, _ := claims["exp"].(json.Number).Int64(); got != c.wantExp.Unix() {
				t.Errorf("exp claim %d, want %d", got, c.wantExp.Unix())
			}
		})
	}
	for _, exp := range []time.Time{start.Truncate(time.Second), start.Add(-10 * time.Second)} {
		_, err := m.Mint(decision(exp, nil))
		var ie *introspect.Error
		if !errors.As(err, &ie) || ie.Code != introspect.CodeInvalidToken || ie.Reason != "expired" {
			t.Errorf("caller exp %v at %v: err %v, want invalid_token expired", exp.Unix(), start.Unix(), err)
		}
	}
}

// TestClaimsOfTheCallerAreCopiedOnlyWhenPresent: acr, auth_time and cnf
// and the configured claims come from the caller's token as sent; sub falls
// back to client_id (RFC 9068 §2.2) and an empty scope is left out.
func TestClaimsOfTheCallerAreCopiedOnlyWhenPresent(t *testing.T) {
	keys := writeKeys(t)
	m := newMinter(t, Options{SigningKeyFile: keys[2].file, Claims: []string{"tenant", "roles", "acr", "missing"},
		Audience: []string{"orders-service", "billing-service"}})
	cnf := map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
	d := introspect.DecisionFields{ClientID: "batch-job", Claims: map[string]any{"cnf": cnf, "tenant": "acme",
		"roles": []any{"reader", "auditor"}, "secret_note": "not named, not copied", "missing": nil}}.Build()
	tok, err := m.Mint(d)
	if err != nil {
		t.Fatal(err)
	}
	_, claims, ok := introspect.UnverifiedJWT(tok.JWT)
	if !ok {
		t.Fatal("not a JWT")
	}
	want := map[string]string{"sub": `"batch-job"`, "client_id": `"batch-job"`, "tenant": `"acme"`,
		"roles": `["reader","auditor"]`, "cnf": `{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}`,
		"aud": `["orders-service","billing-service"]`, "iss": `"` + testIssuer + `"`}
	for name, w := range want {
		got, _ := json.Marshal(claims[name])
		if string(got) != w {
			t.Errorf("%s = %s, want %s", name, got, w)
		}
	}
	for _, absent := range []string{"scope", "acr", "auth_time", "secret_note", "missing", "nbf"} {
		if _, ok := claims[absent]; ok {
			t.Errorf("%s present: %v", absent, claims[absent])
		}
	}
	if st := m.Settings(); strings.Join(st.Claims, " ") != "acr auth_time cnf tenant roles missing" {
		t.Errorf("settings claims %q", st.Claims)
	}
}

// TestJTIsAreUnique: every signature gets a new jti.
func TestJTIsAreUnique(t *testing.T) {
	m := newMinter(t, Options{SigningKeyFile: writeKeys(t)[2].file})
	seen := map[string]bool{}
	for range 200 {
		tok, err := m.Mint(decision(time.Time{}, nil))
		if err != nil {
			t.Fatal(err)
		}
		if seen[tok.ID] {
			t.Fatalf("jti %s repeated", tok.ID)
		}
		seen[tok.ID] = true
	}
}

// TestConfigErrorsNameTheSetting: what Check and New refuse, and that the
// message says which sub-directive to fix.
func TestConfigErrorsNameTheSetting(t *testing.T) {
	keys := writeKeys(t)
	dir := t.TempDir()
	pub := filepath.Join(dir, "public.pem")
	der, _ := x509.MarshalPKIXPublicKey(keys[1].public)
	_ = os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	// The EC JWK again, under another file name: same kid.
	dup := filepath.Join(dir, "copy.jwk")
	b, _ := os.ReadFile(keys[3].file)
	_ = os.WriteFile(dup, b, 0o600)
	big := filepath.Join(dir, "big.pem")
	_ = os.WriteFile(big, bytes.Repeat([]byte{' '}, 1<<20+10), 0o600)
	ok := Options{SigningKeyFile: keys[0].file, Issuer: testIssuer, Audience: []string{testAudience}}
	cases := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no signing key", func(o *Options) { o.SigningKeyFile = "" }, "signing_key is required"},
		{"no issuer", func(o *Options) { o.Issuer = "" }, "issuer is required"},
		{"the caller's issuer", func(o *Options) { o.CallerIssuers = []string{testIssuer} }, "give the gateway its own"},
		{"no audience", func(o *Options) { o.Audience = nil }, "audience is required"},
		{"ttl too long", func(o *Options) { o.TTL = 2 * time.Hour }, "ttl 2h0m0s: must be between 1s and 1h0m0s"},
		{"ttl too short", func(o *Options) { o.TTL = time.Millisecond }, "ttl 1ms"},
		{"claims overwriting iss", func(o *Options) { o.Claims = []string{"tenant", "iss"} }, "claims: iss is set by the gateway"},
		{"relative jwks_path", func(o *Options) { o.JWKSPath = "jwks.json" }, "jwks_path"},
		{"next is the same file", func(o *Options) { o.NextSigningKeyFile = o.SigningKeyFile }, "next_signing_key is the signing_key file"},
		{"missing file", func(o *Options) { o.SigningKeyFile = filepath.Join(dir, "nope.pem") }, "upstream_token: signing_key: open"},
		{"oversized file", func(o *Options) { o.SigningKeyFile = big }, "upstream_token: signing_key " + big + ": larger than 1048576 bytes"},
		{"public key only", func(o *Options) { o.SigningKeyFile = pub }, "upstream_token: signing_key " + pub + ": the PEM file holds only a public key"},
		{"next with the same kid", func(o *Options) { o.SigningKeyFile, o.NextSigningKeyFile = keys[3].file, dup }, `next_signing_key has the kid "gw-2026-01"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := ok
			c.edit(&o)
			_, err := New(o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), "private_key:") {
				t.Errorf("err names the introspect block's private_key: %v", err)
			}
		})
	}
	if _, err := New(ok); err != nil {
		t.Fatalf("the valid options: %v", err)
	}
}

// TestReuseRenewsWhenMostOfTheLifeIsGone: the same token is handed out
// while more than half of its life is left, then a new one (new jti) is
// signed; a token cut short by the caller's exp is used to its end.
func TestReuseRenewsWhenMostOfTheLifeIsGone(t *testing.T) {
	clk := newClock(time.Unix(1_800_000_000, 0))
	m := newMinter(t, Options{SigningKeyFile: writeKeys(t)[1].file, Now: clk.now})
	d := decision(clk.now().Add(10*time.Minute), nil)
	var reuse Reuse
	first, err := m.For(d, &reuse)
	if err != nil {
		t.Fatal(err)
	}
	clk.add(29 * time.Second)
	if again, _ := m.For(d, &reuse); again != first {
		t.Fatalf("at 29s of 60s a new token was signed")
	}
	clk.add(2 * time.Second)
	renewed, err := m.For(d, &reuse)
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first || renewed.ID == first.ID {
		t.Fatalf("at 31s of 60s the old token was reused")
	}
	if renewed.IssuedAt.Unix() != 1_800_000_031 || renewed.ExpiresAt.Unix() != 1_800_000_091 {
		t.Errorf("renewed iat %d exp %d", renewed.IssuedAt.Unix(), renewed.ExpiresAt.Unix())
	}
	if n := m.Signatures(); n != 2 {
		t.Errorf("%d signatures, want 2", n)
	}

	// Capped by the caller's exp 40s ahead: a new token could not live
	// longer, so this one is used until it expires, then the caller's
	// token is expired too.
	short := decision(clk.now().Add(40*time.Second), nil)
	var r2 Reuse
	capped, err := m.For(short, &r2)
	if err != nil {
		t.Fatal(err)
	}
	clk.add(39 * time.Second)
	if again, _ := m.For(short, &r2); again != capped {
		t.Errorf("a token capped by the caller's exp was renewed before its end")
	}
	clk.add(time.Second)
	if _, err := m.For(short, &r2); !errors.Is(err, introspect.ErrInvalidToken) {
		t.Errorf("after the caller's exp: %v, want invalid_token", err)
	}
	if n := m.Signatures(); n != 3 {
		t.Errorf("%d signatures, want 3", n)
	}
}

// TestReuseSignsOnceForConcurrentRequests: many requests arriving at once
// for one fresh decision wait for one signature.
func TestReuseSignsOnceForConcurrentRequests(t *testing.T) {
	m := newMinter(t, Options{SigningKeyFile: writeKeys(t)[0].file})
	d := decision(time.Now().Add(time.Hour), nil)
	var reuse Reuse
	var wg sync.WaitGroup
	toks := make([]*Token, 64)
	for i := range toks {
		wg.Go(func() {
			tok, err := m.For(d, &reuse)
			if err != nil {
				t.Error(err)
			}
			toks[i] = tok
		})
	}
	wg.Wait()
	if n := m.Signatures(); n != 1 {
		t.Errorf("%d signatures for %d concurrent requests, want 1", n, len(toks))
	}
	for _, tok := range toks {
		if tok != toks[0] {
			t.Fatal("requests got different tokens")
		}
	}
}

// TestReuseKeepsEachMintersToken: routes sharing a decision but minting for
// different upstreams each reuse their own token, never the other's; more
// minters than slots still get correct tokens.
func TestReuseKeepsEachMintersToken(t *testing.T) {
	key := writeKeys(t)[1].file
	d := decision(time.Now().Add(time.Hour), nil)
	var reuse Reuse
	var ms []*Minter
	for _, aud := range []string{"a", "b", "c", "d", "e"} {
		ms = append(ms, newMinter(t, Options{SigningKeyFile: key, Audience: []string{aud}}))
	}
	for round := range 3 {
		for i, m := range ms[:reuseSlots] {
			tok, err := m.For(d, &reuse)
			if err != nil {
				t.Fatal(err)
			}
			_, claims, _ := introspect.UnverifiedJWT(tok.JWT)
			if claims["aud"] != m.opts.Audience[0] {
				t.Fatalf("round %d: minter %d got a token for aud %v", round, i, claims["aud"])
			}
			if n := m.Signatures(); n != 1 {
				t.Errorf("round %d: minter %d signed %d times", round, i, n)
			}
		}
	}
	// A fifth minter takes a slot; its token is its own.
	tok, err := ms[4].For(d, &reuse)
	if err != nil {
		t.Fatal(err)
	}
	if _, claims, _ := introspect.UnverifiedJWT(tok.JWT); claims["aud"] != "e" {
		t.Errorf("fifth minter: aud %v", claims["aud"])
	}
}
