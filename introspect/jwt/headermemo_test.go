package jwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/introspect/claims"
)

// The header memo only saves work: a remembered header never lets through
// a token that the header rules, the claims or the signature would refuse,
// and a refused header is judged again every time.
func TestHeaderMemoSavesWorkButNeverJudges(t *testing.T) {
	k := jwtKeys(t)
	v := jwtTestVerifier(t, jwtStandardSet(t), nil)
	ctx := context.Background()
	good := jwtSign(t, "ES256", k.EC1, jwtHeader("ES256", "ec-1"), jwtClaims())
	if v.KnownHeader(good) {
		t.Fatal("a header was known before any token was verified")
	}
	if _, err := v.Verify(ctx, good); err != nil {
		t.Fatal(err)
	}
	if !v.KnownHeader(good) {
		t.Fatal("an accepted header was not remembered")
	}
	// The memo answers for the header only: a token with the wrong
	// segments is not JWT-shaped because its header is known, and one whose
	// payload or signature is not base64url is refused as malformed.
	hdr0, _, _ := strings.Cut(good, ".")
	for _, odd := range []string{hdr0 + ".cGF5bG9hZA", hdr0 + "..c2ln", hdr0 + ".cGF5.", hdr0 + ".cGF5.c2ln.eHh4"} {
		if v.KnownHeader(odd) || LooksLike(odd) {
			t.Errorf("%q: KnownHeader %v, LooksLike %v", odd, v.KnownHeader(odd), LooksLike(odd))
		}
	}
	for _, odd := range []string{hdr0 + ".cGF5.c2ln+/=", hdr0 + ".cG F5.c2ln"} {
		if _, err := v.Verify(ctx, odd); claims.AsError(err).Reason != "malformed" {
			t.Errorf("%q: %v, want a malformed token", odd, err)
		}
	}

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Same header, forged signature and bad claims: still refused.
	hdr, _, _ := strings.Cut(good, ".")
	forged := good[:strings.LastIndexByte(good, '.')+1] + strings.Repeat("A", 86)
	expired := jwtClaims()
	expired["exp"] = jwtTestNow.Add(-time.Hour).Unix()
	for name, tok := range map[string]string{
		"forged signature": forged,
		"expired":          jwtSign(t, "ES256", k.EC1, jwtHeader("ES256", "ec-1"), expired),
		"other key":        jwtSign(t, "ES256", other, jwtHeader("ES256", "ec-1"), jwtClaims()),
	} {
		if !strings.HasPrefix(tok, hdr+".") {
			t.Fatalf("%s: the test token does not share the remembered header", name)
		}
		if _, err := v.Verify(ctx, tok); claims.AsError(err).Code != claims.CodeInvalidToken {
			t.Errorf("%s: %v, want invalid_token", name, err)
		}
	}

	// A refused header is never remembered.
	typless := jwtSign(t, "ES256", k.EC1, map[string]any{"alg": "ES256", "kid": "ec-1"}, jwtClaims())
	for range 2 {
		if _, err := v.Verify(ctx, typless); claims.AsError(err).Reason != "typ" {
			t.Fatalf("no typ: %v, want reason typ", err)
		}
		if v.KnownHeader(typless) {
			t.Fatal("a refused header was remembered")
		}
	}

	// Bounded whatever is sent: a flood of distinct accepted headers fills
	// at most the table, and the last one is still found or replaced.
	for i := range 500 {
		h := jwtHeader("ES256", "ec-1")
		h["x-flood"] = fmt.Sprint(i)
		tok := jwtSign(t, "ES256", k.EC1, h, jwtClaims())
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for i := range v.headers.slots {
		if v.headers.slots[i].Load() != nil {
			n++
		}
	}
	if n > len(v.headers.slots) {
		t.Fatalf("%d headers remembered", n)
	}
	if _, err := v.Verify(ctx, good); err != nil {
		t.Fatalf("the first token after the flood: %v", err)
	}
}

// A decision owns everything it holds: the payload buffer it was read from
// is reused for the next token, and must leave no trace in it.
func TestDecisionOutlivesItsPayloadBuffer(t *testing.T) {
	k := jwtKeys(t)
	v := jwtTestVerifier(t, jwtStandardSet(t), nil)
	ctx := context.Background()
	claimsOf := func(i int) map[string]any {
		c := jwtClaims()
		c["sub"] = fmt.Sprintf("user-%d", i)
		c["aud"] = []string{jwtTestAudience, fmt.Sprintf("other-%d", i)}
		c["tenant"] = map[string]any{"id": fmt.Sprintf("t-%d", i), "roles": []string{"a", fmt.Sprint(i)}}
		return c
	}
	first, err := v.Verify(ctx, jwtSign(t, "EdDSA", k.Ed1, jwtHeader("EdDSA", "ed-1"), claimsOf(1)))
	if err != nil {
		t.Fatal(err)
	}
	want := first.Fields()
	for i := 2; i < 50; i++ {
		if _, err := v.Verify(ctx, jwtSign(t, "EdDSA", k.Ed1, jwtHeader("EdDSA", "ed-1"), claimsOf(i))); err != nil {
			t.Fatal(err)
		}
	}
	if got := first.Fields(); !reflect.DeepEqual(got, want) {
		t.Fatalf("the first decision changed:\n got %+v\nwant %+v", got, want)
	}
	if first.Subject() != "user-1" || !first.HasAudience("other-1") {
		t.Fatalf("the first decision changed: %s %v", first.Subject(), first.Audience())
	}
}
