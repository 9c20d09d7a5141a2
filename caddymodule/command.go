package caddymodule

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "bearer-auth",
		Usage: "token | doctor",
		Short: "Tools for the bearer_auth handler (demo tokens, diagnostics)",
		Long: `
Tools for tokengate's bearer_auth handler.

  caddy bearer-auth token   mints a signed JWT access token from a local
                            private key, for demos and tests
  caddy bearer-auth doctor  checks a config's bearer_auth blocks against
                            their authorization servers

Run "caddy bearer-auth <command> --help" for the flags of each.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(tokenCommand(), doctorCommand())
		},
	})
}

func tokenCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "token --key <file> --issuer <url> --audience <aud> [--scope <scopes>] [--sub <id>] [--client-id <id>] [--ttl <duration>]",
		Short: "Mints a signed JWT access token (RFC 9068) for demos and tests",
		Long: `
Mints a JWT access token signed with a local private key (a JWK file, such
as demo/demo-private.jwk from the tokengate repository) and writes it to
stdout. The token has typ at+jwt, a kid, and the claims iss, sub, aud,
client_id, scope, iat, nbf, exp and jti.

This is for demos and tests: in production, tokens come from your
authorization server.

--key        private key file (JWK JSON)             (required)
--issuer     iss claim                               (required)
--audience   aud claim; repeat or comma-separate     (required)
--scope      space-separated scopes                  (default: none)
--sub        sub claim                               (default: demo-user)
--client-id  client_id claim                         (default: demo-client)
--ttl        lifetime                                (default: 1h)`,
	}
	f := c.Flags()
	f.String("key", "", "private key file (JWK JSON)")
	f.String("issuer", "", "iss claim")
	f.StringSlice("audience", nil, "aud claim (repeatable)")
	f.String("scope", "", "space-separated scopes")
	f.String("sub", "demo-user", "sub claim")
	f.String("client-id", "demo-client", "client_id claim")
	f.Duration("ttl", time.Hour, "token lifetime")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		get := func(n string) string { v, _ := cmd.Flags().GetString(n); return v }
		aud, _ := cmd.Flags().GetStringSlice("audience")
		ttl, _ := cmd.Flags().GetDuration("ttl")
		tok, err := mintToken(get("key"), get("issuer"), aud, get("scope"), get("sub"), get("client-id"), ttl, time.Now())
		if err != nil {
			return err
		}
		fmt.Println(tok)
		return nil
	}
	return c
}

// mintToken signs an RFC 9068 access token with the key in keyFile.
func mintToken(keyFile, issuer string, audience []string, scope, sub, clientID string, ttl time.Duration, now time.Time) (string, error) {
	if keyFile == "" || issuer == "" || len(audience) == 0 {
		return "", fmt.Errorf("--key, --issuer and --audience are required")
	}
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		return "", fmt.Errorf("reading key: %w", err)
	}
	key, err := jwk.ParseKey(raw)
	if err != nil {
		return "", fmt.Errorf("parsing %s as a JWK: %w", keyFile, err)
	}
	alg := key.Algorithm()
	if alg == nil || alg.String() == "" {
		return "", fmt.Errorf("%s has no alg: add \"alg\" (e.g. ES256) to the JWK", keyFile)
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	b := jwt.NewBuilder().Issuer(issuer).Subject(sub).Audience(audience).
		IssuedAt(now).NotBefore(now).Expiration(now.Add(ttl)).JwtID(hex.EncodeToString(jti[:])).
		Claim("client_id", clientID)
	if s := strings.TrimSpace(scope); s != "" {
		b = b.Claim("scope", s)
	}
	t, err := b.Build()
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.TypeKey, "at+jwt")
	signed, err := jwt.Sign(t, jwt.WithKey(jwa.SignatureAlgorithm(alg.String()), key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return string(signed), nil
}
