package jwt

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/introspect/internal/jwttest"

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

// The signing helpers live in internal/jwttest, shared with the root
// package's router tests.
var (
	jwtKeys      = jwttest.NewKeys
	jwtPublicJWK = jwttest.PublicJWK
	jwtSet       = jwttest.Set
)

// jwtStandardSet is the static set most tests use: one RS256, one ES256
// and one EdDSA key, each with a kid.
func jwtStandardSet(t testing.TB) *StaticKeySet {
	t.Helper()
	k := jwtKeys(t)
	ks, err := NewStaticKeySet(jwtSet(t,
		jwtPublicJWK(t, k.RSA1, "rsa-1", jwa.RS256),
		jwtPublicJWK(t, k.EC1, "ec-1", jwa.ES256),
		jwtPublicJWK(t, k.Ed1, "ed-1", jwa.EdDSA),
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

var (
	jwtHeader  = jwttest.Header
	jwtB64JSON = jwttest.B64JSON
	jwtSign    = jwttest.Sign
)

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
