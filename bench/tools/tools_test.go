// Package tools holds the helpers bench/run.sh needs, as tests that skip
// unless run.sh asks for them: a real authorization server (the same
// in-process one the integration tests use) that serves until it is
// killed, and a fast minter of demo JWTs for the cold path.
//
// run.sh builds them once with `go test -c` and runs the binary:
//
//	tools.test -test.run '^TestServeAS$'   (BENCH_AS_DIR set)
//	tools.test -test.run '^TestMintJWTs$'  (BENCH_MINT_N, BENCH_MINT_OUT set)
package tools

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/tokengate/tokengate/internal/testas"
)

// TestServeAS runs the test authorization server on 127.0.0.1 and writes
// into $BENCH_AS_DIR: issuer, introspection_url, and token (an opaque
// access token of client svc-a with scope read, valid for an hour). It
// serves until SIGTERM/SIGINT or $BENCH_AS_MAX (default 10m).
func TestServeAS(t *testing.T) {
	dir := os.Getenv("BENCH_AS_DIR")
	if dir == "" {
		t.Skip("run by bench/run.sh (set BENCH_AS_DIR)")
	}
	slog.SetDefault(slog.New(slog.DiscardHandler))
	as := testas.Start(t, testas.WithTokenLifetime(time.Hour))
	tok := as.Token(t, "svc-a", "read")
	for name, v := range map[string]string{
		"issuer":            as.Issuer(),
		"introspection_url": as.IntrospectionURL(),
		"token":             tok,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	maxRun := 10 * time.Minute
	if s := os.Getenv("BENCH_AS_MAX"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		maxRun = d
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-time.After(maxRun):
	}
	t.Logf("introspection calls served: %d", as.IntrospectionCalls())
}

// TestMintJWTs writes $BENCH_MINT_N JWT access tokens, one per line, to
// $BENCH_MINT_OUT, with the claims `caddy bearer-auth token` gives them
// (typ at+jwt, kid, iss, sub, aud, client_id, scope, iat, nbf, exp, jti),
// each with its own sub and jti. $BENCH_MINT_ALG ES256 (the default) signs
// with demo/demo-private.jwk; RS256 signs with a new RSA-2048 key whose
// public JWKS goes to $BENCH_MINT_JWKS.
func TestMintJWTs(t *testing.T) {
	out := os.Getenv("BENCH_MINT_OUT")
	if out == "" {
		t.Skip("run by bench/run.sh (set BENCH_MINT_N and BENCH_MINT_OUT)")
	}
	n, err := strconv.Atoi(os.Getenv("BENCH_MINT_N"))
	if err != nil || n <= 0 {
		t.Fatalf("BENCH_MINT_N: %v", err)
	}
	alg := jwa.ES256
	var key jwk.Key
	switch a := os.Getenv("BENCH_MINT_ALG"); a {
	case "", "ES256":
		raw, err := os.ReadFile(filepath.Join("..", "..", "demo", "demo-private.jwk"))
		if err != nil {
			t.Fatal(err)
		}
		if key, err = jwk.ParseKey(raw); err != nil {
			t.Fatal(err)
		}
	case "RS256":
		alg = jwa.RS256
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		if key, err = jwk.FromRaw(priv); err != nil {
			t.Fatal(err)
		}
		_ = key.Set(jwk.KeyIDKey, "bench-rs256")
		_ = key.Set(jwk.AlgorithmKey, jwa.RS256)
		_ = key.Set(jwk.KeyUsageKey, "sig")
		pub, err := key.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		set := jwk.NewSet()
		_ = set.AddKey(pub)
		b, err := json.Marshal(set)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(os.Getenv("BENCH_MINT_JWKS"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("BENCH_MINT_ALG %q: want ES256 or RS256", a)
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// Signing (RSA above all) is the slow part: use every CPU.
	toks := make([][]byte, n)
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hdr := jws.NewHeaders()
			_ = hdr.Set(jws.TypeKey, "at+jwt")
			for i := w; i < n; i += workers {
				var jti [16]byte
				_, _ = rand.Read(jti[:])
				tok, err := jwt.NewBuilder().Issuer("https://demo.tokengate.test").Subject(fmt.Sprintf("user-%d", i)).
					Audience([]string{"demo-api"}).IssuedAt(now).NotBefore(now).Expiration(now.Add(time.Hour)).
					JwtID(hex.EncodeToString(jti[:])).Claim("client_id", "demo-client").Claim("scope", "read").Build()
				if err == nil {
					toks[i], err = jwt.Sign(tok, jwt.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for _, tok := range toks {
		w.Write(tok)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
