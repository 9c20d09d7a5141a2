package jwt

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tokengate/tokengate/introspect/claims"
)

// jwtRemoteFixture is a JWKS server, a RemoteKeySet on it (fake clock) and
// a verifier on that.
type jwtRemoteFixture struct {
	srv   *jwksTestServer
	ks    *RemoteKeySet
	v     *Verifier
	clock *jwtTestClock
	obs   *jwtTestObserver
	logs  *observer.ObservedLogs
}

func newJWTRemoteFixture(t *testing.T, set jwk.Set, mod func(*RemoteKeySetConfig)) *jwtRemoteFixture {
	t.Helper()
	f := &jwtRemoteFixture{srv: newJWKSTestServer(t, set), clock: newJWTTestClock(), obs: &jwtTestObserver{}}
	core, logs := observer.New(zap.DebugLevel)
	f.logs = logs
	cfg := RemoteKeySetConfig{
		URL:      f.srv.URL + "/jwks",
		Now:      f.clock.Now,
		Observer: f.obs,
		Logger:   zap.New(core),
	}
	if mod != nil {
		mod(&cfg)
	}
	ks, err := NewRemoteKeySet(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ks.Close)
	f.ks = ks
	f.v = jwtTestVerifier(t, ks, func(c *Config) { c.Now = f.clock.Now })
	return f
}

func (f *jwtRemoteFixture) verify(t *testing.T, tok string) error {
	t.Helper()
	_, err := f.v.Verify(context.Background(), tok)
	return err
}

func TestRemoteKeySetReportsItsURLAndLastFetchError(t *testing.T) {
	k := jwtKeys(t)
	f := newJWTRemoteFixture(t, jwtSet(t, jwtPublicJWK(t, k.RSA1, "rsa-1", jwa.RS256)), nil)
	if f.ks.URL() != f.srv.URL+"/jwks" || f.ks.LastError() != nil {
		t.Fatalf("before any fetch: URL %q, LastError %v", f.ks.URL(), f.ks.LastError())
	}
	f.srv.SetResponse(http.StatusInternalServerError, "text/plain", []byte("down"), nil)
	if err := f.ks.Refresh(context.Background()); err == nil || f.ks.LastError() == nil || f.ks.LastError().Error() != err.Error() {
		t.Fatalf("failed fetch: Refresh %v, LastError %v", err, f.ks.LastError())
	}
	f.srv.SetKeys(t, jwtSet(t, jwtPublicJWK(t, k.RSA1, "rsa-1", jwa.RS256)))
	if err := f.ks.Refresh(context.Background()); err != nil || f.ks.LastError() != nil {
		t.Fatalf("good fetch: Refresh %v, LastError %v", err, f.ks.LastError())
	}
}

func TestRemoteKeySetDoesNotFetchUntilAsked(t *testing.T) {
	k := jwtKeys(t)
	f := newJWTRemoteFixture(t, jwtSet(t, jwtPublicJWK(t, k.RSA1, "rsa-1", jwa.RS256)), nil)
	time.Sleep(20 * time.Millisecond) // an absence: time for a fetch started at once to arrive
	if n := f.srv.requests.Load(); n != 0 {
		t.Fatalf("NewRemoteKeySet fetched %d times", n)
	}
	// The first token loads the keys itself.
	if err := f.verify(t, jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims())); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.requests.Load(); n != 1 {
		t.Fatalf("requests = %d, want 1", n)
	}
}

func TestRemoteKeySetUnknownKidRefreshIsRateLimited(t *testing.T) {
	k := jwtKeys(t)
	f := newJWTRemoteFixture(t, jwtSet(t, jwtPublicJWK(t, k.RSA1, "rsa-1", jwa.RS256)), nil)
	if err := f.ks.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(11 * time.Second) // past MinRefreshInterval: one refresh is allowed

	// Tokens need good claims, or they are rejected before the key lookup.
	tokens := make([]string, 1000)
	for i := range tokens {
		h := jwtHeader("RS256", fmt.Sprintf("random-%d-%d", i, rand.Int64()))
		tokens[i] = jwtB64JSON(t, h) + "." + jwtB64JSON(t, jwtClaims()) + ".c2ln"
	}

	t.Run("1000 concurrent tokens with random kids cause at most one more fetch", func(t *testing.T) {
		var wg sync.WaitGroup
		for _, tok := range tokens {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := f.verify(t, tok)
				var e *claims.Error
				if !errors.As(err, &e) || e.Reason != "unknown_key" {
					t.Errorf("err = %v, want unknown_key", err)
				}
			}()
		}
		wg.Wait()
		t.Logf("JWKS requests: %d (1 at startup + refreshes)", f.srv.requests.Load())
		if n := f.srv.requests.Load(); n > 2 {
			t.Fatalf("JWKS fetched %d times for 1000 unknown kids, want <= 2", n)
		}
	})
	t.Run("1000 sequential tokens with random kids within the interval cause no fetch", func(t *testing.T) {
		before := f.srv.requests.Load()
		for _, tok := range tokens {
			_ = f.verify(t, tok)
		}
		if n := f.srv.requests.Load() - before; n != 0 {
			t.Fatalf("JWKS fetched %d more times, want 0", n)
		}
	})
	t.Run("the next interval allows exactly one more fetch", func(t *testing.T) {
		before := f.srv.requests.Load()
		f.clock.Advance(10 * time.Second)
		for _, tok := range tokens[:50] {
			_ = f.verify(t, tok)
		}
		if n := f.srv.requests.Load() - before; n != 1 {
			t.Fatalf("JWKS fetched %d more times, want 1", n)
		}
	})
}

func TestRemoteKeySetKeyRotation(t *testing.T) {
	k := jwtKeys(t)
	f := newJWTRemoteFixture(t, jwtSet(t, jwtPublicJWK(t, k.RSA1, "old", jwa.RS256)), nil)
	if err := f.ks.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	oldTok := jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "old"), jwtClaims())
	newTok := jwtSign(t, "RS256", k.RSA2, jwtHeader("RS256", "new"), jwtClaims())

	if err := f.verify(t, oldTok); err != nil {
		t.Fatalf("old-kid token before rotation: %v", err)
	}
	// The AS rotates: the new key replaces the old one.
	f.srv.SetKeys(t, jwtSet(t, jwtPublicJWK(t, k.RSA2, "new", jwa.RS256)))

	if err := f.verify(t, newTok); !errors.Is(err, claims.ErrInvalidToken) {
		t.Fatalf("new-kid token within MinRefreshInterval of the last fetch: err = %v, want unknown key", err)
	}
	f.clock.Advance(10 * time.Second)
	if err := f.verify(t, newTok); err != nil {
		t.Fatalf("new-kid token after the interval: %v (want accepted after refresh)", err)
	}
	err := f.verify(t, oldTok)
	var e *claims.Error
	if !errors.As(err, &e) || e.Reason != "unknown_key" {
		t.Fatalf("old-kid token after its key was removed: err = %v, want unknown_key", err)
	}
	if got := f.ks.Len(); got != 1 {
		t.Errorf("Len = %d after the swap, want 1 (a refresh replaces the set)", got)
	}
	if ok := f.obs.ok.Load(); ok != 2 {
		t.Errorf("observer saw %d good refreshes, want 2", ok)
	}
}

func TestRemoteKeySetFailedRefreshKeepsLastGoodSet(t *testing.T) {
	k := jwtKeys(t)
	good := jwtSet(t, jwtPublicJWK(t, k.RSA1, "rsa-1", jwa.RS256))
	tok := jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims())
	encOnly := jwtPublicJWK(t, k.RSA2, "enc", "")
	_ = encOnly.Set(jwk.KeyUsageKey, "enc")
	encBody, _ := json.Marshal(jwtSet(t, encOnly))
	secret := []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0LXRva2VuLWRvLW5vdC1sb2c","kid":"hs"}]}`)

	tests := []struct {
		name   string
		status int
		ctype  string
		body   []byte
		want   string
	}{
		{"a 500 keeps the last good set", http.StatusInternalServerError, "application/json", []byte(`{"error":"boom"}`), "unexpected HTTP status 500"},
		{"a 404 keeps the last good set", http.StatusNotFound, "text/html", []byte("<html>secret-body</html>"), "unexpected HTTP status 404"},
		{"an HTML 200 keeps the last good set", http.StatusOK, "text/html", []byte("<html>secret-body</html>"), "unexpected Content-Type"},
		{"invalid JSON keeps the last good set", http.StatusOK, "application/json", []byte(`{"keys":[`), "invalid JSON"},
		{"a JSON object without keys keeps the last good set", http.StatusOK, "application/json", []byte(`{"kty":"RSA"}`), `no "keys" member`},
		{"a set with only an encryption key keeps the last good set", http.StatusOK, "application/jwk-set+json", encBody, "no usable signature verification key"},
		{"a set with only a symmetric key keeps the last good set", http.StatusOK, "application/json", secret, "no usable signature verification key"},
		{"a body over MaxBytes keeps the last good set", http.StatusOK, "application/json", []byte(`{"keys":[],"pad":"` + strings.Repeat("x", 2048) + `"}`), "larger than 1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newJWTRemoteFixture(t, good, func(c *RemoteKeySetConfig) { c.MaxBytes = 1024 })
			if err := f.ks.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			f.srv.SetResponse(tt.status, tt.ctype, tt.body, nil)
			err := f.ks.Refresh(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Refresh err = %v, want it to contain %q", err, tt.want)
			}
			if f.ks.Len() != 1 {
				t.Fatalf("Len = %d after a failed refresh, want the last good 1", f.ks.Len())
			}
			if err := f.verify(t, tok); err != nil {
				t.Fatalf("token with the kept key: %v", err)
			}
			if f.obs.failed.Load() != 1 || f.obs.ok.Load() != 1 {
				t.Errorf("observer ok=%d failed=%d, want 1/1", f.obs.ok.Load(), f.obs.failed.Load())
			}
			warns := f.logs.FilterMessage("jwks refresh failed; keeping the last good key set").All()
			if len(warns) != 1 || warns[0].Level != zap.WarnLevel {
				t.Fatalf("want one warn log, got %v", f.logs.All())
			}
			for _, e := range f.logs.All() {
				line := fmt.Sprint(e.Message, e.ContextMap())
				if strings.Contains(line, "secret-body") || strings.Contains(line, "c2VjcmV0") || strings.Contains(line, "boom") {
					t.Errorf("log line leaks the response body: %s", line)
				}
			}
		})
	}
}

func TestRemoteKeySetWithNoKeysIsUnavailable(t *testing.T) {
	k := jwtKeys(t)
	f := newJWTRemoteFixture(t, jwtSet(t), nil)
	f.srv.SetResponse(http.StatusServiceUnavailable, "text/plain", []byte("down"), nil)
	if err := f.ks.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh succeeded against a 503")
	}
	tok := jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims())
	for _, name := range []string{"a token while the JWKS is down and no keys were ever loaded is a 503, not the caller's fault", "the same within the refresh interval is still a 503"} {
		t.Run(name, func(t *testing.T) {
			err := f.verify(t, tok)
			if !errors.Is(err, claims.ErrUnavailable) {
				t.Fatalf("err = %v, want temporarily_unavailable", err)
			}
			if e := claims.AsError(err); e.Reason != "jwks_unavailable" || e.Hint == "" {
				t.Errorf("reason %q hint %q", e.Reason, e.Hint)
			}
		})
	}
	t.Run("once the JWKS is back the next interval loads the keys", func(t *testing.T) {
		f.srv.SetKeys(t, jwtSet(t, jwtPublicJWK(t, k.RSA1, "rsa-1", jwa.RS256)))
		f.clock.Advance(10 * time.Second)
		if err := f.verify(t, tok); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRemoteKeySetUnreachableIsUnavailable(t *testing.T) {
	k := jwtKeys(t)
	srv := newJWKSTestServer(t, jwtSet(t))
	url := srv.URL
	srv.Close()
	ks, err := NewRemoteKeySet(context.Background(), RemoteKeySetConfig{URL: url, HTTPClient: &http.Client{Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	v := jwtTestVerifier(t, ks, nil)
	_, err = v.Verify(context.Background(), jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims()))
	if !errors.Is(err, claims.ErrUnavailable) {
		t.Fatalf("err = %v, want temporarily_unavailable", err)
	}
}

func TestRemoteKeySetBackgroundRefresh(t *testing.T) {
	k := jwtKeys(t)
	set := jwtSet(t, jwtPublicJWK(t, k.RSA1, "rsa-1", jwa.RS256))
	srv := newJWKSTestServer(t, set)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ks, err := NewRemoteKeySet(ctx, RemoteKeySetConfig{URL: srv.URL, DefaultRefresh: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("the set refreshes itself without Cache-Control every DefaultRefresh", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for srv.requests.Load() < 4 {
			if time.Now().After(deadline) {
				t.Fatalf("only %d fetches after 5s with a 20ms refresh", srv.requests.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("cancelling the context stops the background refresh", func(t *testing.T) {
		cancel()
		select {
		case <-ks.loopDone:
		case <-time.After(5 * time.Second):
			t.Fatal("background goroutine still running after cancel")
		}
		n := srv.requests.Load()
		time.Sleep(100 * time.Millisecond) // an absence: five refresh intervals with no fetch
		if m := srv.requests.Load(); m != n {
			t.Fatalf("fetched %d more times after cancel", m-n)
		}
		ks.Close() // idempotent after cancel
		ks.Close()
	})
}

func TestRemoteKeySetHonoursMaxAge(t *testing.T) {
	k := jwtKeys(t)
	f := newJWTRemoteFixture(t, jwtSet(t, jwtPublicJWK(t, k.RSA1, "rsa-1", jwa.RS256)), nil)
	body, _ := json.Marshal(jwtSet(t, jwtPublicJWK(t, k.RSA1, "rsa-1", jwa.RS256)))
	f.srv.SetResponse(http.StatusOK, "application/json", body, http.Header{"Cache-Control": {"public, max-age=3600"}})
	if err := f.ks.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.ks.mu.Lock()
	next := f.ks.next
	f.ks.mu.Unlock()
	if want := jwtTestNow.Add(time.Hour); !next.Equal(want) {
		t.Errorf("next refresh %s, want %s (max-age=3600)", next, want)
	}

	f.srv.SetResponse(http.StatusInternalServerError, "", nil, nil)
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute} {
		_ = f.ks.Refresh(context.Background())
		f.ks.mu.Lock()
		got := f.ks.next.Sub(f.clock.Now())
		f.ks.mu.Unlock()
		if got != want {
			t.Errorf("after failure %d the retry is in %s, want %s", i+1, got, want)
		}
	}
}

func TestJWKSFreshness(t *testing.T) {
	def := 5 * time.Minute
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{"no Cache-Control uses the default", http.Header{}, def},
		{"max-age within bounds is honoured", http.Header{"Cache-Control": {"max-age=600"}}, 10 * time.Minute},
		{"max-age among other directives is found", http.Header{"Cache-Control": {"public, must-revalidate, Max-Age=900"}}, 15 * time.Minute},
		{"a quoted max-age is accepted", http.Header{"Cache-Control": {`max-age="120"`}}, 2 * time.Minute},
		{"max-age below one minute is clamped up to 1m", http.Header{"Cache-Control": {"max-age=5"}}, time.Minute},
		{"max-age=0 is clamped up to 1m", http.Header{"Cache-Control": {"max-age=0"}}, time.Minute},
		{"max-age above one day is clamped down to 24h", http.Header{"Cache-Control": {"max-age=604800"}}, 24 * time.Hour},
		{"an enormous max-age does not overflow", http.Header{"Cache-Control": {"max-age=99999999999999999"}}, 24 * time.Hour},
		{"no-store counts as the 1m floor", http.Header{"Cache-Control": {"no-store"}}, time.Minute},
		{"no-cache counts as the 1m floor", http.Header{"Cache-Control": {"max-age=3600, no-cache"}}, time.Minute},
		{"Age is subtracted from max-age", http.Header{"Cache-Control": {"max-age=600"}, "Age": {"300"}}, 5 * time.Minute},
		{"Age beyond max-age still leaves the 1m floor", http.Header{"Cache-Control": {"max-age=600"}, "Age": {"900"}}, time.Minute},
		{"a garbage max-age uses the default", http.Header{"Cache-Control": {"max-age=soon"}}, def},
		{"a negative max-age uses the default", http.Header{"Cache-Control": {"max-age=-1"}}, def},
		{"the smaller of duplicate max-age values wins", http.Header{"Cache-Control": {"max-age=600", "max-age=120"}}, 2 * time.Minute},
		{"s-maxage alone is ignored", http.Header{"Cache-Control": {"s-maxage=600"}}, def},
		{"a directive that does not parse does not hide no-store", http.Header{"Cache-Control": {"max-age=soon, no-store"}}, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := freshness(tt.header, def); got != tt.want {
				t.Errorf("freshness = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRemoteKeySetRefreshHonoursCallerContext(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	ks, err := NewRemoteKeySet(context.Background(), RemoteKeySetConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := ks.Refresh(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Refresh err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Refresh waited %s past its caller's deadline", d)
	}
}

func TestNewRemoteKeySetRefusesBadConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  RemoteKeySetConfig
	}{
		{"an empty URL is refused", RemoteKeySetConfig{}},
		{"a relative URL is refused", RemoteKeySetConfig{URL: "/jwks"}},
		{"a file URL is refused", RemoteKeySetConfig{URL: "file:///etc/jwks.json"}},
		{"a negative MaxBytes is refused", RemoteKeySetConfig{URL: "https://as.example.com/jwks", MaxBytes: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if ks, err := NewRemoteKeySet(context.Background(), tt.cfg); err == nil {
				ks.Close()
				t.Fatal("accepted")
			}
		})
	}
}

func TestStaticKeySet(t *testing.T) {
	k := jwtKeys(t)
	tok := jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", "rsa-1"), jwtClaims())
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	setJSON, _ := json.Marshal(jwtSet(t, jwtPublicJWK(t, k.RSA1, "rsa-1", jwa.RS256)))
	der, _ := x509.MarshalPKIXPublicKey(&k.RSA1.PublicKey)
	privJWK, _ := jwk.FromRaw(k.RSA1)
	_ = privJWK.Set(jwk.KeyIDKey, "rsa-1")
	privJSON, _ := json.Marshal(privJWK)

	t.Run("a JWKS file verifies its tokens", func(t *testing.T) {
		ks, err := LoadKeySetFile(write("jwks.json", setJSON))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jwtTestVerifier(t, ks, nil).Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		if got := ks.Algorithms(); len(got) != 1 || got[0] != jwa.RS256 {
			t.Errorf("Algorithms = %v, want [RS256]", got)
		}
	})
	t.Run("a PEM public key file verifies tokens without kid", func(t *testing.T) {
		ks, err := LoadKeySetFile(write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
		if err != nil {
			t.Fatal(err)
		}
		noKid := jwtSign(t, "RS256", k.RSA1, jwtHeader("RS256", ""), jwtClaims())
		if _, err := jwtTestVerifier(t, ks, nil).Verify(context.Background(), noKid); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a private JWK file keeps only the public key", func(t *testing.T) {
		ks, err := LoadKeySetFile(write("priv.json", privJSON))
		if err != nil {
			t.Fatal(err)
		}
		key, err := ks.Key(context.Background(), "rsa-1", jwa.RS256)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := key.(jwk.RSAPublicKey); !ok {
			t.Fatalf("key is %T, want a public key", key)
		}
	})
	t.Run("a missing file is an error", func(t *testing.T) {
		if _, err := LoadKeySetFile(filepath.Join(dir, "nope.json")); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("a set with only unusable keys is refused with the reasons", func(t *testing.T) {
		small, _ := jwk.ParseKey([]byte(`{"kty":"RSA","kid":"small","n":"` + strings.Repeat("A", 170) + `w","e":"AQAB"}`))
		oct, _ := jwk.FromRaw([]byte("secret"))
		_, err := NewStaticKeySet(jwtSet(t, small, oct))
		if err == nil || !strings.Contains(err.Error(), "below the 2048") || !strings.Contains(err.Error(), `key type "oct"`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a key whose key_ops lack verify is skipped", func(t *testing.T) {
		key := jwtPublicJWK(t, k.EC1, "ec", jwa.ES256)
		_ = key.Set(jwk.KeyOpsKey, jwk.KeyOperationList{jwk.KeyOpEncrypt})
		if _, err := NewStaticKeySet(jwtSet(t, key)); err == nil || !strings.Contains(err.Error(), "key_ops") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestParseJWKSDocumentSkipsOnlyBadKeys(t *testing.T) {
	k := jwtKeys(t)
	goodKey, _ := json.Marshal(jwtPublicJWK(t, k.EC1, "ec-1", jwa.ES256))
	doc := `{"keys":[{"kty":"weird"},` + string(goodKey) + `,{"kty":"OKP","crv":"X25519","x":"` + strings.Repeat("A", 43) + `","kid":"x"}]}`
	snap, skipped, err := parseJWKS([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if snap.len() != 1 || len(skipped) != 2 || skipped[0].Index != 0 || skipped[1].Index != 2 {
		t.Fatalf("len %d skipped %+v", snap.len(), skipped)
	}
}
