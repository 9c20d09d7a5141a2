package asclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testas"
	"github.com/tokengate/tokengate/introspect/claims"
	"github.com/tokengate/tokengate/introspect/internal/httpbody"
)

const (
	caBearerClient = "gw-bearer"
	caBearerSecret = "gw-bearer-secret"
)

// caBearerAS starts the real AS with the gateway's bearer client: it may ask
// for "introspect" (and "read", to test a token without introspect).
func caBearerAS(t *testing.T, opts ...testas.Option) *testas.Server {
	t.Helper()
	opts = append(opts, testas.WithClients(testas.Client{ID: caBearerClient, Secret: caBearerSecret, Scopes: []string{"introspect", "read"}}))
	return testas.Start(t, opts...)
}

type caClock struct {
	mu sync.Mutex
	t  time.Time
}

func newCAClock() *caClock { return &caClock{t: time.Now()} }

func (c *caClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *caClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type caObserver struct {
	mu    sync.Mutex
	calls []string
}

func (o *caObserver) UpstreamCall(endpoint string, _ time.Duration, code string) {
	o.mu.Lock()
	o.calls = append(o.calls, endpoint+":"+code)
	o.mu.Unlock()
}

func (o *caObserver) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.calls)
}

// caBearerFront is an introspection endpoint that takes a Bearer token as
// client authentication, as Oath's authorization server does. The real AS
// (zitadel/oidc) accepts only client secrets or assertions at introspection
// (op.webServer.introspectionHandler: "client must be authenticated"), so
// this front does what such a server does, using the real AS for every
// decision: it introspects the gateway's bearer token at the real AS (as
// the AS's own "gateway" client), refuses it with Oath's errors if it is
// inactive (401 invalid_token) or lacks the introspect scope (403
// insufficient_scope), and otherwise forwards the introspection to the real
// AS and returns its answer unchanged.
type caBearerFront struct {
	srv *httptest.Server
	as  *testas.Server

	mu       sync.Mutex
	calls    int
	rejected int
	bearers  map[string]int
}

func newCABearerFront(t *testing.T, as *testas.Server) *caBearerFront {
	f := &caBearerFront{as: as, bearers: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *caBearerFront) realIntrospect(token string) (int, []byte, string, error) {
	form := url.Values{"token": {token}}
	req, _ := http.NewRequest(http.MethodPost, f.as.IntrospectionURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testas.GatewayID, testas.GatewaySecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header.Get("Content-Type"), err
}

func (f *caBearerFront) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	reject := func(status int, code, desc string) {
		f.mu.Lock()
		f.rejected++
		f.mu.Unlock()
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error=%q`, code))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
	}
	if err := r.ParseForm(); err != nil {
		reject(400, "invalid_request", "unable to process request")
		return
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || bearer == "" || r.PostForm.Has("client_secret") || r.PostForm.Has("client_assertion") {
		reject(400, "invalid_request", "unable to process request")
		return
	}
	f.mu.Lock()
	f.bearers[bearer]++
	f.mu.Unlock()
	status, body, _, err := f.realIntrospect(bearer)
	if err != nil || status != 200 {
		http.Error(w, "upstream", http.StatusBadGateway)
		return
	}
	var m struct {
		Active bool   `json:"active"`
		Scope  string `json:"scope"`
	}
	_ = json.Unmarshal(body, &m)
	if !m.Active {
		reject(401, "invalid_token", "The access token provided is expired, revoked, malformed, or invalid for other reasons.")
		return
	}
	if !slices.Contains(strings.Fields(m.Scope), "introspect") {
		reject(403, "insufficient_scope", "request is not authorized for introspection")
		return
	}
	status, body, ct, err := f.realIntrospect(r.PostForm.Get("token"))
	if err != nil {
		http.Error(w, "upstream", http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (f *caBearerFront) stats() (calls, rejected, distinctBearers int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.rejected, len(f.bearers)
}

func caNewBearer(s *testas.Server, clock *caClock, obs Observer, scopes ...string) *BearerAuth {
	if scopes == nil {
		scopes = []string{"introspect"}
	}
	b := &BearerAuth{
		TokenEndpoint: s.TokenURL(),
		ClientAuth:    SecretBasic{ClientID: caBearerClient, ClientSecret: caBearerSecret},
		Scopes:        scopes,
		Observer:      obs,
	}
	if clock != nil {
		b.Now = clock.Now
	}
	return b
}

func caMustIntrospect(t testing.TB, in *Introspector, tok, wantClient string) {
	t.Helper()
	d, err := in.Introspect(context.Background(), tok)
	if err != nil {
		t.Errorf("introspect: %v", err)
		return
	}
	if d.ClientID() != wantClient {
		t.Errorf("client_id = %q, want %q", d.ClientID(), wantClient)
	}
}

func TestBearerAuthReusesToken(t *testing.T) {
	s := caBearerAS(t)
	front := newCABearerFront(t, s)
	tok := s.Token(t, "svc-a", "read")
	s.ResetCounts()
	obs := &caObserver{}
	b := caNewBearer(s, nil, obs)
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	in := &Introspector{Endpoint: front.srv.URL, Auth: b}
	for i := 0; i < 20; i++ {
		caMustIntrospect(t, in, tok, "svc-a")
	}
	if n := s.TokenCalls(); n != 1 {
		t.Errorf("token endpoint called %d times for 20 introspections, want 1", n)
	}
	if calls, rejected, bearers := front.stats(); calls != 20 || rejected != 0 || bearers != 1 {
		t.Errorf("front: %d calls, %d rejected, %d distinct bearer tokens", calls, rejected, bearers)
	}
	if got := obs.list(); !slices.Equal(got, []string{"token:"}) {
		t.Errorf("observer saw %v", got)
	}
	if b.Method() != "bearer" {
		t.Errorf("Method = %q", b.Method())
	}
}

func TestBearerAuthRefreshesOnceNearExpiry(t *testing.T) {
	s := caBearerAS(t) // tokens live 5 min
	front := newCABearerFront(t, s)
	tok := s.Token(t, "svc-a", "read")
	s.ResetCounts()
	clock := newCAClock()
	b := caNewBearer(s, clock, nil)
	in := &Introspector{Endpoint: front.srv.URL, Auth: b}

	caMustIntrospect(t, in, tok, "svc-a")
	// 300 s lifetime: replaced when min(10%, 30 s) = 30 s are left.
	clock.Advance(260 * time.Second)
	caMustIntrospect(t, in, tok, "svc-a")
	if n := s.TokenCalls(); n != 1 {
		t.Fatalf("token refreshed %d times before the refresh point", n-1)
	}
	clock.Advance(15 * time.Second) // 275 s: inside the margin

	caConcurrently(50, func() { caMustIntrospect(t, in, tok, "svc-a") })
	if n := s.TokenCalls(); n != 2 {
		t.Errorf("50 concurrent introspections near expiry made %d token calls, want 1", n-1)
	}
	caConcurrently(50, func() { caMustIntrospect(t, in, tok, "svc-a") })
	if n := s.TokenCalls(); n != 2 {
		t.Errorf("the refreshed token was not reused: %d token calls", n)
	}
	if calls, rejected, bearers := front.stats(); calls != 102 || rejected != 0 || bearers != 2 {
		t.Errorf("front: %d calls, %d rejected, %d distinct bearer tokens; want 102, 0, 2", calls, rejected, bearers)
	}
}

func TestBearerAuthRenewsOnceWhenTokenRejected(t *testing.T) {
	s := caBearerAS(t)
	front := newCABearerFront(t, s)
	tok := s.Token(t, "svc-a", "read")
	s.ResetCounts()
	clock := newCAClock()
	b := caNewBearer(s, clock, nil)
	in := &Introspector{Endpoint: front.srv.URL, Auth: b}

	caMustIntrospect(t, in, tok, "svc-a")
	first, err := b.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The AS revokes the gateway's token long before it expires.
	s.Revoke(t, caBearerClient, first)

	// One request: rejected once, renewed once, then success.
	caMustIntrospect(t, in, tok, "svc-a")
	if n := s.TokenCalls(); n != 2 {
		t.Errorf("token calls = %d, want 2 (one renewal)", n)
	}
	if _, rejected, _ := front.stats(); rejected != 1 {
		t.Errorf("front rejected %d requests, want 1", rejected)
	}
	second, _ := b.Token(context.Background())
	if second == first {
		t.Fatal("token not renewed")
	}

	// 50 requests in flight with a token that dies: still one renewal.
	clock.Advance(5 * time.Second) // past RenewInterval since the last renewal
	s.Revoke(t, caBearerClient, second)
	caConcurrently(50, func() { caMustIntrospect(t, in, tok, "svc-a") })
	if n := s.TokenCalls(); n != 3 {
		t.Errorf("token calls = %d after 50 concurrent rejections, want 3 (one more renewal)", n)
	}
	if _, _, bearers := front.stats(); bearers != 3 {
		t.Errorf("%d distinct bearer tokens seen, want 3", bearers)
	}
}

// The real AS does not take a Bearer token as introspection client
// authentication at all (zitadel's introspection handler wants a secret or
// an assertion); this is what an operator who picks auth_method bearer for
// such a server is told.
func TestBearerAuthAtRealIntrospectionEndpoint(t *testing.T) {
	s := caBearerAS(t)
	tok := s.Token(t, "svc-a")
	in := &Introspector{Endpoint: s.IntrospectionURL(), Auth: caNewBearer(s, nil, nil)}
	_, ase := caIntrospectError(t, in, tok)
	// zitadel: 400 invalid_request "client_id or client_assertion must be
	// provided" (not 401, so the Introspector does not renew and retry).
	if ase.Endpoint != s.IntrospectionURL() || ase.Status != 400 || ase.Code != "invalid_request" {
		t.Errorf("got %+v", ase)
	}
	if !strings.Contains(ase.Hint(), "auth_method") {
		t.Errorf("hint %q does not mention auth_method", ase.Hint())
	}
}

func TestBearerAuthDiagnostics(t *testing.T) {
	s := caBearerAS(t)
	front := newCABearerFront(t, s)
	tok := s.Token(t, "svc-a")

	t.Run("wrong secret at the token endpoint", func(t *testing.T) {
		s.ResetCounts()
		clock := newCAClock()
		obs := &caObserver{}
		b := &BearerAuth{TokenEndpoint: s.TokenURL(), Scopes: []string{"introspect"}, Now: clock.Now, Observer: obs,
			ClientAuth: SecretPost{ClientID: caBearerClient, ClientSecret: "wrong"}}
		in := &Introspector{Endpoint: front.srv.URL, Auth: b}
		_, ase := caIntrospectError(t, in, tok)
		if ase.Endpoint != s.TokenURL() || ase.Status != 401 || ase.Code != "invalid_client" {
			t.Errorf("got %+v", ase)
		}
		if !strings.Contains(ase.Hint(), "client_secret") {
			t.Errorf("hint %q", ase.Hint())
		}
		// The Introspector's retry and the next requests do not hammer the
		// token endpoint while it keeps refusing us...
		for i := 0; i < 10; i++ {
			caIntrospectError(t, in, tok)
		}
		if n := s.TokenCalls(); n != 1 {
			t.Errorf("token endpoint called %d times, want 1 within the back-off", n)
		}
		// ...but asks again after it.
		clock.Advance(DefaultTokenFailureBackoff + time.Millisecond)
		caIntrospectError(t, in, tok)
		if n := s.TokenCalls(); n != 2 {
			t.Errorf("token endpoint called %d times, want 2 after the back-off", n)
		}
		if calls, _, _ := front.stats(); calls != 0 {
			t.Errorf("introspection called %d times without a token", calls)
		}
		if got := obs.list(); !slices.Equal(got, []string{"token:invalid_client", "token:invalid_client"}) {
			t.Errorf("observer saw %v", got)
		}
		var e *claims.Error
		_, err := in.Introspect(context.Background(), tok)
		if !errors.As(err, &e) || e.Code != claims.CodeUnavailable {
			t.Errorf("want temporarily_unavailable, got %v", err)
		}
	})

	t.Run("unknown scope (Oath's troubleshooting page's introspects typo)", func(t *testing.T) {
		b := caNewBearer(s, nil, nil, "introspects")
		_, ase := caIntrospectError(t, &Introspector{Endpoint: front.srv.URL, Auth: b}, tok)
		if ase.Code != "invalid_scope" || ase.Endpoint != s.TokenURL() || !strings.Contains(ase.Hint(), "token_scope") {
			t.Errorf("got %+v, hint %q", ase, ase.Hint())
		}
	})

	t.Run("token without the introspect scope", func(t *testing.T) {
		b := caNewBearer(s, nil, nil, "read")
		_, ase := caIntrospectError(t, &Introspector{Endpoint: front.srv.URL, Auth: b}, tok)
		if ase.Code != "insufficient_scope" || ase.Endpoint != front.srv.URL || !strings.Contains(ase.Hint(), "token_scope") {
			t.Errorf("got %+v, hint %q", ase, ase.Hint())
		}
	})

	t.Run("token endpoint unreachable", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		b := &BearerAuth{TokenEndpoint: dead.URL + "/token", ClientAuth: SecretBasic{ClientID: "x", ClientSecret: "y"}}
		_, err := (&Introspector{Endpoint: front.srv.URL, Auth: b}).Introspect(context.Background(), tok)
		var e *claims.Error
		if !errors.As(err, &e) || e.Code != claims.CodeUnavailable {
			t.Fatalf("got %v", err)
		}
		// The token endpoint's own error comes through unwrapped, so the
		// log carries its specific hint.
		if e.Reason != "unreachable" || !strings.Contains(e.Hint, "token endpoint") {
			t.Errorf("error %+v", e)
		}
	})
}

func TestBearerAuthZitadelNegativeExpiresIn(t *testing.T) {
	// An AS whose clock runs 10 min behind issues 5-min tokens that are
	// born expired: zitadel sends expires_in as uint64(-300). The token
	// still works at that AS (its own clock says so), so it is used, but
	// only cached for a second, never "for 584 billion years".
	s := caBearerAS(t)
	front := newCABearerFront(t, s)
	tok := s.Token(t, "svc-a")
	s.SetClockOffset(-10 * time.Minute)
	if tr := s.TokenResponse(t, caBearerClient, "introspect"); tr.ExpiresIn >= 0 {
		t.Fatalf("test AS did not issue a born-expired token: %d", tr.ExpiresIn)
	}
	s.ResetCounts()
	clock := newCAClock()
	in := &Introspector{Endpoint: front.srv.URL, Auth: caNewBearer(s, clock, nil)}
	caMustIntrospect(t, in, tok, "svc-a")
	caMustIntrospect(t, in, tok, "svc-a")
	if n := s.TokenCalls(); n != 1 {
		t.Errorf("token calls = %d within a second, want 1", n)
	}
	clock.Advance(minTokenCache + time.Millisecond)
	caMustIntrospect(t, in, tok, "svc-a")
	if n := s.TokenCalls(); n != 2 {
		t.Errorf("token calls = %d after the short cache, want 2", n)
	}
}

func TestExpiresInAndCacheFor(t *testing.T) {
	const assumed = time.Minute
	for _, tc := range []struct {
		in   any
		want time.Duration
	}{
		{nil, assumed},
		{json.Number("300"), 300 * time.Second},
		{json.Number("1.5"), 1500 * time.Millisecond},
		{"3600", time.Hour},
		{json.Number("0"), 0},
		{json.Number("-300"), 0},
		{json.Number("18446744073709551316"), 0}, // zitadel's uint64(-300)
		{json.Number("1e300"), 0},
		{json.Number("315360001"), 0}, // > 10 years
		{"soon", assumed},
		{true, assumed},
	} {
		if got := expiresIn(tc.in, assumed); got != tc.want {
			t.Errorf("expiresIn(%#v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ lifetime, want time.Duration }{
		{300 * time.Second, 270 * time.Second},
		{time.Hour, time.Hour - 30*time.Second},
		{60 * time.Second, 54 * time.Second},
		{5 * time.Second, 4500 * time.Millisecond},
		{0, time.Second},
		{100 * 24 * time.Hour, 24 * time.Hour},
	} {
		if got := cacheFor(tc.lifetime); got != tc.want {
			t.Errorf("cacheFor(%v) = %v, want %v", tc.lifetime, got, tc.want)
		}
	}
}

// caTokenServer is a token endpoint whose answer the test sets; it records
// each request's form and Authorization header.
type caTokenServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	status  int
	ctype   string
	body    string
	delay   time.Duration
	calls   int
	forms   []url.Values
	authHdr []string
}

func newCATokenServer(t *testing.T) *caTokenServer {
	ts := &caTokenServer{status: 200, ctype: "application/json", body: `{"access_token":"tok-1","token_type":"Bearer","expires_in":300}`}
	ts.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		ts.mu.Lock()
		ts.calls++
		ts.forms = append(ts.forms, r.PostForm)
		ts.authHdr = append(ts.authHdr, r.Header.Get("Authorization"))
		status, ctype, body, delay := ts.status, ts.ctype, ts.body, ts.delay
		ts.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *caTokenServer) set(status int, ctype, body string) {
	ts.mu.Lock()
	ts.status, ts.ctype, ts.body = status, ctype, body
	ts.mu.Unlock()
}

func (ts *caTokenServer) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.calls
}

func TestBearerAuthTokenRequest(t *testing.T) {
	ts := newCATokenServer(t)
	key, err := ParsePrivateKey(caPKCS8(t, caKeys(t).ec), "gw-key")
	if err != nil {
		t.Fatal(err)
	}
	b := &BearerAuth{
		TokenEndpoint: ts.srv.URL + "/token",
		ClientAuth:    PrivateKeyJWT{ClientID: "gw", Key: key, Audience: ts.srv.URL + "/token"},
		Scopes:        []string{"introspect", "read"},
	}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	if err := b.Authenticate(context.Background(), "https://as.example.com/introspect", url.Values{}, h); err != nil {
		t.Fatal(err)
	}
	if got := h.Get("Authorization"); got != "Bearer tok-1" {
		t.Errorf("Authorization = %q", got)
	}
	form := ts.forms[0]
	if form.Get("grant_type") != "client_credentials" || form.Get("scope") != "introspect read" {
		t.Errorf("form %v", form)
	}
	if form.Get("client_assertion_type") != ClientAssertionTypeJWTBearer || form.Get("client_assertion") == "" || form.Get("client_id") != "gw" {
		t.Errorf("client authentication missing from the token request: %v", form)
	}
	for n := range form {
		if n != strings.ToLower(n) {
			t.Errorf("parameter %q not lower case", n)
		}
	}
	if ts.authHdr[0] != "" {
		t.Errorf("Authorization header on an assertion-authenticated request: %q", ts.authHdr[0])
	}
}

func TestBearerAuthTokenResponseChecks(t *testing.T) {
	for _, tc := range []struct {
		name, ctype, body string
		ok                bool
		lifetime          time.Duration
	}{
		{"lower-case bearer, string expires_in", "application/json", `{"access_token":"t","token_type":"bearer","expires_in":"120"}`, true, 120 * time.Second},
		{"no token_type, no expires_in", "application/json", `{"access_token":"t"}`, true, DefaultAssumedTokenLifetime},
		{"json without the json content type", "text/plain", `{"access_token":"t","token_type":"Bearer","expires_in":60}`, true, time.Minute},
		{"DPoP token", "application/json", `{"access_token":"t","token_type":"DPoP","expires_in":60}`, false, 0},
		{"header injection", "application/json", `{"access_token":"t\r\nX-Evil: 1","token_type":"Bearer"}`, false, 0},
		{"space in token", "application/json", `{"access_token":"a b","token_type":"Bearer"}`, false, 0},
		{"no access_token", "application/json", `{"token_type":"Bearer"}`, false, 0},
		{"access_token not a string", "application/json", `{"access_token":42}`, false, 0},
		{"html login page", "text/html", `<html>login</html>`, false, 0},
		{"form-encoded (GitHub style)", "application/x-www-form-urlencoded", `access_token=t&token_type=bearer`, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newCATokenServer(t)
			ts.set(200, tc.ctype, tc.body)
			clock := newCAClock()
			b := &BearerAuth{TokenEndpoint: ts.srv.URL, ClientAuth: SecretBasic{ClientID: "gw", ClientSecret: "s"}, Now: clock.Now}
			tok, err := b.Token(context.Background())
			if !tc.ok {
				var e *claims.Error
				if err == nil || !errors.As(err, &e) || e.Code != claims.CodeUnavailable || e.Reason != "bad_response" {
					t.Fatalf("got %q, %v", tok, err)
				}
				t.Log(err)
				return
			}
			if err != nil || tok != "t" {
				t.Fatalf("got %q, %v", tok, err)
			}
			// Cached for lifetime − min(10%, 30 s), not a moment longer.
			clock.Advance(cacheFor(tc.lifetime) - time.Millisecond)
			_, _ = b.Token(context.Background())
			if ts.count() != 1 {
				t.Errorf("refetched before %v", cacheFor(tc.lifetime))
			}
			clock.Advance(2 * time.Millisecond)
			_, _ = b.Token(context.Background())
			if ts.count() != 2 {
				t.Errorf("not refetched after %v", cacheFor(tc.lifetime))
			}
		})
	}

	t.Run("oversized response", func(t *testing.T) {
		ts := newCATokenServer(t)
		ts.set(200, "application/json", `{"access_token":"`+strings.Repeat("a", 2000)+`"}`)
		b := &BearerAuth{TokenEndpoint: ts.srv.URL, ClientAuth: SecretBasic{ClientID: "gw", ClientSecret: "s"}, MaxResponseBytes: 1024}
		if _, err := b.Token(context.Background()); err == nil || !errors.Is(err, httpbody.ErrTooLarge) {
			t.Errorf("got %v", err)
		}
	})

	t.Run("error without an OAuth body", func(t *testing.T) {
		ts := newCATokenServer(t)
		ts.set(404, "text/html", `<html>not found</html>`)
		b := &BearerAuth{TokenEndpoint: ts.srv.URL, ClientAuth: SecretBasic{ClientID: "gw", ClientSecret: "s"}}
		_, err := b.Token(context.Background())
		var ase *ASError
		if !errors.As(err, &ase) || ase.Status != 404 || !strings.Contains(ase.Hint(), "URL") {
			t.Errorf("got %v", err)
		}
	})
}

func TestBearerAuthTimeouts(t *testing.T) {
	ts := newCATokenServer(t)
	ts.mu.Lock()
	ts.delay = 2 * time.Second
	ts.mu.Unlock()
	b := &BearerAuth{TokenEndpoint: ts.srv.URL, ClientAuth: SecretBasic{ClientID: "gw", ClientSecret: "s"}, Timeout: 100 * time.Millisecond}
	start := time.Now()
	_, err := b.Token(context.Background())
	var e *claims.Error
	if !errors.As(err, &e) || e.Code != claims.CodeUnavailable || e.Reason != "timeout" {
		t.Errorf("got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v with a 100ms timeout", d)
	}

	// A caller whose own context ends stops waiting at once.
	b2 := &BearerAuth{TokenEndpoint: ts.srv.URL, ClientAuth: SecretBasic{ClientID: "gw", ClientSecret: "s"}, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := b2.Token(ctx); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v with a 50ms context", d)
	}
}

func TestBearerAuthKeepsLiveTokenWhenRefreshFails(t *testing.T) {
	ts := newCATokenServer(t)
	clock := newCAClock()
	b := &BearerAuth{TokenEndpoint: ts.srv.URL, ClientAuth: SecretBasic{ClientID: "gw", ClientSecret: "s"}, Now: clock.Now}
	if tok, err := b.Token(context.Background()); err != nil || tok != "tok-1" {
		t.Fatal(tok, err)
	}
	// Inside the refresh margin, the token endpoint fails: the token, still
	// alive for 20 s, keeps serving.
	clock.Advance(280 * time.Second)
	ts.set(503, "application/json", `{"error":"temporarily_unavailable"}`)
	if tok, err := b.Token(context.Background()); err != nil || tok != "tok-1" {
		t.Errorf("got %q, %v; want the still-live token", tok, err)
	}
	// Past its real expiry it is not used.
	clock.Advance(30 * time.Second)
	if tok, err := b.Token(context.Background()); err == nil {
		t.Errorf("expired token used: %q", tok)
	}
	// Renew drops it even while alive.
	ts.set(200, "application/json", `{"access_token":"tok-2","expires_in":300}`)
	if tok, _ := b.Token(context.Background()); tok != "tok-2" {
		t.Fatalf("got %q", tok)
	}
	clock.Advance(280 * time.Second)
	ts.set(401, "application/json", `{"error":"invalid_client"}`)
	b.Renew()
	if tok, err := b.Token(context.Background()); err == nil {
		t.Errorf("renewed-away token used: %q", tok)
	}
}

func TestBearerAuthRenewCoalescing(t *testing.T) {
	ts := newCATokenServer(t)
	clock := newCAClock()
	b := &BearerAuth{TokenEndpoint: ts.srv.URL, ClientAuth: SecretBasic{ClientID: "gw", ClientSecret: "s"}, Now: clock.Now}
	ctx := context.Background()
	_, _ = b.Token(ctx)
	var renews atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Renew()
			renews.Add(1)
			if _, err := b.Token(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := ts.count(); n != 2 {
		t.Errorf("%d token calls after 50 Renew+Token, want 2", n)
	}
	clock.Advance(DefaultRenewInterval)
	b.Renew()
	_, _ = b.Token(ctx)
	if n := ts.count(); n != 3 {
		t.Errorf("%d token calls after a later Renew, want 3", n)
	}
}

func TestBearerAuthValidate(t *testing.T) {
	basic := SecretBasic{ClientID: "gw", ClientSecret: "s"}
	for _, tc := range []struct {
		name string
		b    *BearerAuth
		want string
	}{
		{"no endpoint", &BearerAuth{ClientAuth: basic}, "token_endpoint"},
		{"relative endpoint", &BearerAuth{TokenEndpoint: "/token", ClientAuth: basic}, "absolute"},
		{"fragment", &BearerAuth{TokenEndpoint: "https://as/token#x", ClientAuth: basic}, "fragment"},
		{"no client auth", &BearerAuth{TokenEndpoint: "https://as/token"}, "client authentication"},
		{"bearer in bearer", &BearerAuth{TokenEndpoint: "https://as/token", ClientAuth: &BearerAuth{}}, "cannot itself"},
		{"bad scope", &BearerAuth{TokenEndpoint: "https://as/token", ClientAuth: basic, Scopes: []string{"a b"}}, "scope"},
		{"bad nested assertion", &BearerAuth{TokenEndpoint: "https://as/token", ClientAuth: ClientSecretJWT{ClientID: "gw", Secret: "s", Audience: "a", Lifetime: 48 * time.Hour}}, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.b.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want mention of %q", err, tc.want)
			}
		})
	}
	ok := &BearerAuth{TokenEndpoint: "https://as.example.com/oauth/token", ClientAuth: basic, Scopes: []string{"introspect"}}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
	var _ Renewable = ok
	var _ ClientAuthenticator = ok
}

// caConcurrently runs f n times at once (released together) and waits.
func caConcurrently(n int, f func()) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f()
		}()
	}
	close(start)
	wg.Wait()
}
