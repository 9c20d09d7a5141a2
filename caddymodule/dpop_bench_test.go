package caddymodule

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// BenchmarkHandlerWarmDPoP is BenchmarkLimits/warm/jwt's request with a
// DPoP-bound token (cnf.jkt) and a fresh ES256 proof each time: the
// decision is cached, so the difference is the proof's cost — parse,
// signature, claims, thumbprint and the memory replay check. Proofs are
// made with jwx before the timer starts.
func BenchmarkHandlerWarmDPoP(b *testing.B) {
	h := benchJWTHandler(b, 0)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, err := jwk.FromRaw(&priv.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	tp, _ := pub.Thumbprint(crypto.SHA256)
	token := benchMintBound(b, base64.RawURLEncoding.EncodeToString(tp))
	sum := sha256.Sum256([]byte(token))
	ath := base64.RawURLEncoding.EncodeToString(sum[:])
	const htu = "http://127.0.0.1/api/items"
	proof := func(i int) string {
		payload, _ := json.Marshal(map[string]any{"jti": "p" + strconv.Itoa(i), "htm": "GET", "htu": htu,
			"iat": time.Now().Unix(), "ath": ath})
		hdr := jws.NewHeaders()
		_ = hdr.Set(jws.TypeKey, "dpop+jwt")
		_ = hdr.Set(jws.JWKKey, pub)
		s, err := jws.Sign(payload, jws.WithKey(jwa.ES256, priv, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			b.Fatal(err)
		}
		return string(s)
	}
	req := func(p string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, htu, nil)
		r.Header.Set("Authorization", "DPoP "+token)
		r.Header.Set("DPoP", p)
		r.Header.Set("User-Agent", "bench")
		r.Header.Set("Accept", "*/*")
		return r
	}
	w := httptest.NewRecorder()
	next := &okNext{}
	if err := serveBench(h, req(proof(-1)), w, next); err != nil || next.n != 1 {
		b.Fatalf("warm-up request was not let through: err=%v code=%d body=%s", err, w.Code, w.Body)
	}
	reqs := make([]*http.Request, b.N)
	for i := range reqs {
		reqs[i] = req(proof(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		_ = serveBench(h, reqs[i], w, next)
	}
	b.StopTimer()
	reportCPU(b, cpu0)
	if next.n != b.N+1 || w.Body.Len() != 0 {
		b.Fatalf("%d of %d requests let through; body %q", next.n-1, b.N, w.Body)
	}
}

// benchMintBound is benchMint with cnf.jkt (RFC 9449 §6.1).
func benchMintBound(tb testing.TB, jkt string) string {
	tb.Helper()
	raw, err := os.ReadFile(benchDemoFile(tb, "demo-private.jwk"))
	if err != nil {
		tb.Fatal(err)
	}
	key, err := jwk.ParseKey(raw)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	t, err := jwt.NewBuilder().Issuer(benchIssuer).Subject("demo-user").Audience([]string{benchAudience}).
		IssuedAt(now).NotBefore(now).Expiration(now.Add(time.Hour)).JwtID("bound").
		Claim("client_id", "demo-client").Claim("scope", "read write").
		Claim("cnf", map[string]any{"jkt": jkt}).Build()
	if err != nil {
		tb.Fatal(err)
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.TypeKey, "at+jwt")
	signed, err := jwt.Sign(t, jwt.WithKey(jwa.SignatureAlgorithm(key.Algorithm().String()), key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		tb.Fatal(err)
	}
	return string(signed)
}
