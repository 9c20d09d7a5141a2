package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Test fixtures shared by the jwt/keyset tests. Keys are generated once per
// test binary: RSA key generation is slow.

const (
	jwtTestIssuer   = "https://as.example.com/"
	jwtTestAudience = "https://api.example.com"
)

// jwtTestNow is the fixed "now" of the tests.
var jwtTestNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

type jwtTestKeys struct {
	rsa1, rsa2, rsa3 *rsa.PrivateKey
	ec1              *ecdsa.PrivateKey
	ed1              ed25519.PrivateKey
}

var (
	jwtTestKeysOnce sync.Once
	jwtTestKeysVal  jwtTestKeys
)

func jwtKeys(t testing.TB) jwtTestKeys {
	t.Helper()
	jwtTestKeysOnce.Do(func() {
		var k jwtTestKeys
		var err error
		for _, p := range []**rsa.PrivateKey{&k.rsa1, &k.rsa2, &k.rsa3} {
			if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		}
		if k.ec1, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, k.ed1, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		jwtTestKeysVal = k
	})
	return jwtTestKeysVal
}

// jwtPublicJWK builds the public JWK of priv with the given kid and alg
// ("" leaves the member out).
func jwtPublicJWK(t testing.TB, priv crypto.Signer, kid string, alg jwa.SignatureAlgorithm) jwk.Key {
	t.Helper()
	k, err := jwk.FromRaw(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	if kid != "" {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	if alg != "" {
		if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Set(jwk.KeyUsageKey, "sig"); err != nil {
		t.Fatal(err)
	}
	return k
}

func jwtSet(t testing.TB, keys ...jwk.Key) jwk.Set {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	return set
}

// jwtStandardSet is the static set most tests use: one RS256, one ES256
// and one EdDSA key, each with a kid.
func jwtStandardSet(t testing.TB) *StaticKeySet {
	t.Helper()
	k := jwtKeys(t)
	ks, err := NewStaticKeySet(jwtSet(t,
		jwtPublicJWK(t, k.rsa1, "rsa-1", jwa.RS256),
		jwtPublicJWK(t, k.ec1, "ec-1", jwa.ES256),
		jwtPublicJWK(t, k.ed1, "ed-1", jwa.EdDSA),
	))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// jwtClaims are good RFC 9068 claims at jwtTestNow.
func jwtClaims() map[string]any {
	return map[string]any{
		"iss":       jwtTestIssuer,
		"aud":       jwtTestAudience,
		"sub":       "user-42",
		"client_id": "client-7",
		"scope":     "read write",
		"iat":       jwtTestNow.Add(-time.Minute).Unix(),
		"exp":       jwtTestNow.Add(5 * time.Minute).Unix(),
		"jti":       "jti-1",
	}
}

func jwtHeader(alg, kid string) map[string]any {
	h := map[string]any{"alg": alg, "typ": "at+jwt"}
	if kid != "" {
		h["kid"] = kid
	}
	return h
}

func jwtB64JSON(t testing.TB, v any) string {
	t.Helper()
	var b []byte
	switch v := v.(type) {
	case string: // raw JSON, for malformed or duplicate members
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// jwtSign builds a compact JWS by hand, so tests control every byte of the
// header and claims. key is *rsa.PrivateKey (RS256/PS256), *ecdsa.PrivateKey
// (ES256), ed25519.PrivateKey (EdDSA) or []byte (HS256), whatever the
// header says.
func jwtSign(t testing.TB, signAlg string, key any, header, claims any) string {
	t.Helper()
	input := jwtB64JSON(t, header) + "." + jwtB64JSON(t, claims)
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch signAlg {
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, sum[:])
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, sum[:], nil)
	case "ES256":
		r, s, e := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), sum[:])
		if e != nil {
			t.Fatal(e)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case "EdDSA":
		sig = ed25519.Sign(key.(ed25519.PrivateKey), []byte(input))
	case "HS256":
		m := hmac.New(sha256.New, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "none":
	default:
		t.Fatalf("jwtSign: unknown alg %s", signAlg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// jwtTestClock is an injectable clock.
type jwtTestClock struct {
	mu sync.Mutex
	t  time.Time
}

func newJWTTestClock() *jwtTestClock { return &jwtTestClock{t: jwtTestNow} }

func (c *jwtTestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *jwtTestClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// jwksTestServer is an httptest JWKS endpoint that counts requests and can
// be told what to answer.
type jwksTestServer struct {
	*httptest.Server
	requests atomic.Int64

	mu          sync.Mutex
	body        []byte
	status      int
	contentType string
	header      http.Header
}

func newJWKSTestServer(t testing.TB, set jwk.Set) *jwksTestServer {
	t.Helper()
	s := &jwksTestServer{status: http.StatusOK, contentType: "application/json"}
	s.SetKeys(t, set)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		body, status, ct, hdr := s.body, s.status, s.contentType, s.header
		s.mu.Unlock()
		for k, v := range hdr {
			w.Header()[k] = v
		}
		if ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksTestServer) SetKeys(t testing.TB, set jwk.Set) {
	t.Helper()
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	s.SetResponse(http.StatusOK, "application/json", b, nil)
}

func (s *jwksTestServer) SetResponse(status int, contentType string, body []byte, header http.Header) {
	s.mu.Lock()
	s.status, s.contentType, s.body, s.header = status, contentType, body, header
	s.mu.Unlock()
}

// jwtTestObserver counts JWKS refreshes.
type jwtTestObserver struct{ ok, failed atomic.Int64 }

func (o *jwtTestObserver) JWKSRefresh(ok bool) {
	if ok {
		o.ok.Add(1)
	} else {
		o.failed.Add(1)
	}
}
