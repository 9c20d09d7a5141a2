package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/tokengate/tokengate/internal/testas"
)

func TestMain(m *testing.M) {
	// The authorization server logs every route and error through the
	// global slog logger, as it does in serve-as.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// readTokens returns the lines of a mint output file.
func readTokens(t *testing.T, path string) []string {
	t.Helper()
	toks, err := readLines(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// checkTokens verifies every token against the JWKS file and checks the
// claims the bench gateway's sites require, and that sub and jti differ.
func checkTokens(t *testing.T, toks []string, jwksFile string, n int, now time.Time) {
	t.Helper()
	if len(toks) != n {
		t.Fatalf("%d tokens, want %d", len(toks), n)
	}
	b, err := os.ReadFile(jwksFile)
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwk.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	subs, jtis := map[string]bool{}, map[string]bool{}
	for i, tok := range toks {
		parsed, err := jwt.ParseString(tok, jwt.WithKeySet(set), jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
			jwt.WithIssuer("https://demo.tokengate.test"), jwt.WithAudience("demo-api"),
			jwt.WithClaimValue("client_id", "demo-client"), jwt.WithClaimValue("scope", "read"))
		if err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		msg, err := jws.ParseString(tok)
		if err != nil {
			t.Fatal(err)
		}
		if typ := msg.Signatures()[0].ProtectedHeaders().Type(); typ != "at+jwt" {
			t.Errorf("token %d: typ %q, want at+jwt", i, typ)
		}
		if got := parsed.Expiration().Sub(parsed.IssuedAt()); got != time.Hour {
			t.Errorf("token %d: lifetime %v, want 1h", i, got)
		}
		subs[parsed.Subject()], jtis[parsed.JwtID()] = true, true
	}
	if len(subs) != n || len(jtis) != n {
		t.Errorf("%d distinct subs and %d distinct jtis in %d tokens", len(subs), len(jtis), n)
	}
}

func TestMintES256TokensVerifyAgainstTheDemoJWKS(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "tokens.txt")
	now := time.Now().Truncate(time.Second)
	if err := mint(mintOptions{n: 7, out: out, key: filepath.Join("..", "..", "demo", "demo-private.jwk")}, now); err != nil {
		t.Fatal(err)
	}
	checkTokens(t, readTokens(t, out), filepath.Join("..", "..", "demo", "demo-jwks.json"), 7, now)
}

func TestMintRS256TokensVerifyAgainstTheJWKSItWrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, jwksFile := filepath.Join(dir, "tokens.txt"), filepath.Join(dir, "jwks.json")
	now := time.Now().Truncate(time.Second)
	if err := mint(mintOptions{n: 3, out: out, alg: "RS256", jwks: jwksFile}, now); err != nil {
		t.Fatal(err)
	}
	checkTokens(t, readTokens(t, out), jwksFile, 3, now)
	if err := mint(mintOptions{n: 1, out: out, alg: "HS256"}, now); err == nil {
		t.Error("alg HS256 accepted")
	}
}

// TestFloorVerifiesWhatMintWrites: the floor checks EdDSA and ES256 tokens
// from mint with the JWKS they go with, and refuses a token that does not
// verify.
func TestFloorVerifiesWhatMintWrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now().Truncate(time.Second)
	ed, jwksFile := filepath.Join(dir, "ed.txt"), filepath.Join(dir, "jwks.json")
	if err := mint(mintOptions{n: 4, out: ed, alg: "EdDSA", jwks: jwksFile}, now); err != nil {
		t.Fatal(err)
	}
	checkTokens(t, readTokens(t, ed), jwksFile, 4, now)
	r, err := floor(floorOptions{in: ed, jwks: jwksFile, n: 3, repeat: 2})
	if err != nil || r.alg != "EdDSA" || r.tokens != 3 || r.wall <= 0 {
		t.Errorf("floor: %+v, %v", r, err)
	}
	es := filepath.Join(dir, "es.txt")
	if err := mint(mintOptions{n: 2, out: es, key: filepath.Join("..", "..", "demo", "demo-private.jwk")}, now); err != nil {
		t.Fatal(err)
	}
	if r, err := floor(floorOptions{in: es, jwks: filepath.Join("..", "..", "demo", "demo-jwks.json")}); err != nil || r.alg != "ES256" || r.tokens != 2 {
		t.Errorf("floor: %+v, %v", r, err)
	}
	toks := readTokens(t, es)
	bad := filepath.Join(dir, "bad.txt")
	_ = os.WriteFile(bad, []byte(toks[0][:len(toks[0])-3]+"AAA\n"), 0o600)
	if _, err := floor(floorOptions{in: bad, jwks: filepath.Join("..", "..", "demo", "demo-jwks.json")}); err == nil {
		t.Error("a token with a broken signature passed the floor")
	}
}

func TestServeASWritesWhatRunShReads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	as, stop, err := startAS(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSuffix(string(b), "\n")
	}
	if got := read("issuer"); got != as.Issuer() {
		t.Errorf("issuer %q, want %q", got, as.Issuer())
	}
	// The token is svc-a's, scope read, for an hour, and the gateway's
	// credentials (which run.sh's config uses) introspect it.
	req, _ := http.NewRequest(http.MethodPost, read("introspection_url"), strings.NewReader(url.Values{"token": {read("token")}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testas.GatewayID, testas.GatewaySecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var got struct {
		Active   bool   `json:"active"`
		ClientID string `json:"client_id"`
		Scope    string `json:"scope"`
		Exp      int64  `json:"exp"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("introspection answer %q: %v", body, err)
	}
	if left := time.Until(time.Unix(got.Exp, 0)); !got.Active || got.ClientID != "svc-a" || got.Scope != "read" || left < 55*time.Minute {
		t.Errorf("introspection: %s (expires in %v), want an active svc-a token with scope read for an hour", body, left)
	}
	if n := as.IntrospectionCalls(); n != 1 {
		t.Errorf("introspection calls = %d, want 1", n)
	}
	stop()
	if _, err := http.Get(as.Issuer() + "/.well-known/openid-configuration"); err == nil {
		t.Error("the server still answers after stop")
	}
}
