package main

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

type mintOptions struct {
	n    int
	out  string // tokens, one a line
	alg  string // ES256, RS256 or EdDSA
	key  string // ES256: the private JWK
	jwks string // RS256, EdDSA: where the public JWKS of the new key goes
}

// mint writes o.n JWT access tokens with the claims `caddy bearer-auth
// token` gives them (typ at+jwt, kid, iss, sub, aud, client_id, scope, iat,
// nbf, exp, jti), each with its own sub and jti. ES256 signs with o.key;
// RS256 and EdDSA sign with a new RSA-2048 or Ed25519 key (kid bench-rs256,
// bench-eddsa) whose public JWKS goes to o.jwks.
func mint(o mintOptions, now time.Time) error {
	var alg jwa.SignatureAlgorithm
	var key jwk.Key
	switch o.alg {
	case "", "ES256":
		alg = jwa.ES256
		raw, err := os.ReadFile(o.key)
		if err != nil {
			return err
		}
		if key, err = jwk.ParseKey(raw); err != nil {
			return fmt.Errorf("%s: %w", o.key, err)
		}
	case "RS256", "EdDSA":
		if o.jwks == "" {
			return fmt.Errorf("%s needs a file for the public JWKS", o.alg)
		}
		var priv any
		var err error
		if o.alg == "RS256" {
			alg = jwa.RS256
			priv, err = rsa.GenerateKey(rand.Reader, 2048)
		} else {
			alg = jwa.EdDSA
			_, priv, err = ed25519.GenerateKey(rand.Reader)
		}
		if err != nil {
			return err
		}
		if key, err = jwk.FromRaw(priv); err != nil {
			return err
		}
		_ = key.Set(jwk.KeyIDKey, "bench-"+strings.ToLower(o.alg))
		_ = key.Set(jwk.AlgorithmKey, alg)
		_ = key.Set(jwk.KeyUsageKey, "sig")
		pub, err := key.PublicKey()
		if err != nil {
			return err
		}
		set := jwk.NewSet()
		_ = set.AddKey(pub)
		b, err := json.Marshal(set)
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jwks, b, 0o600); err != nil {
			return err
		}
	default:
		return fmt.Errorf("alg %q: want ES256, RS256 or EdDSA", o.alg)
	}

	// Signing (RSA above all) is the slow part: use every CPU.
	toks := make([][]byte, o.n)
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			hdr := jws.NewHeaders()
			_ = hdr.Set(jws.TypeKey, "at+jwt")
			for i := w; i < o.n; i += workers {
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
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	f, err := os.Create(o.out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, tok := range toks {
		w.Write(tok)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
