// Package testas runs a real OAuth 2.0 authorization server in-process for
// tests: zitadel/oidc's op package speaks the protocol (client_credentials,
// RFC 7662 introspection, RFC 7009 revocation, JWKS, discovery), and a small
// in-memory op.Storage decides who the clients are and what the tokens mean.
//
// Tokens are issued by client_credentials; their sub is the client ID.
// Opaque tokens are the library's encrypted "tokenID:subject" (a JWE, five
// segments); JWT access tokens are RS256 JWS (three segments).
package testas

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Client is an OAuth client registered at the test AS.
type Client struct {
	ID, Secret string
	// Scopes this client may request. A token request without scope gets all
	// of them.
	Scopes []string
	// JWTAccessTokens makes the client's access tokens RS256 JWTs (signed by
	// the current key, carrying scope/client_id/aud/iss/exp/iat/nbf/sub/jti);
	// otherwise they are opaque.
	JWTAccessTokens bool
	// PublicKey (an *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey)
	// enables private_key_jwt client authentication; KeyID, if set, must match
	// the assertion's kid. The assertion's aud must be the issuer, iss = sub =
	// client ID, iat within the last hour and at most 1 s ahead.
	PublicKey any
	KeyID     string
	// CanIntrospect lets the client call the introspection endpoint and get
	// real answers; other clients always get {"active":false}.
	CanIntrospect bool
	// Audience is the aud of the client's tokens; empty means [ID], which is
	// what the library itself puts into a JWT when given no audience.
	Audience []string
	// Claims are added to the client's JWT access tokens and to
	// introspection answers about its tokens, as they are when its tokens
	// are issued (registered claims such as iss, sub, aud, exp cannot be
	// changed this way). For example acr and auth_time, which an AS puts
	// into tokens from a user's login and client_credentials tokens lack.
	Claims map[string]any
	// CertThumbprint, if set, makes the client's tokens certificate-bound
	// (RFC 8705 §3): cnf.x5t#S256 is this value in the JWT and in the
	// introspection response. It stands in for an AS that authenticated
	// the client with that certificate at the token endpoint (RFC 8705 §2),
	// which this in-process AS, serving plain HTTP, cannot see.
	CertThumbprint string
}

// Default clients.
const (
	GatewayID     = "gateway"
	GatewaySecret = "gateway-secret"
)

// DefaultClients are registered on every Start unless WithoutDefaultClients.
func DefaultClients() []Client {
	return []Client{
		{ID: GatewayID, Secret: GatewaySecret, CanIntrospect: true},
		{ID: "svc-a", Secret: "secret-a", Scopes: []string{"read", "write", "admin"}},
		{ID: "svc-b", Secret: "secret-b", Scopes: []string{"read"}},
		{ID: "svc-jwt", Secret: "secret-jwt", Scopes: []string{"read", "write"}, JWTAccessTokens: true},
	}
}

type config struct {
	clients       []Client
	noDefaults    bool
	tokenLifetime time.Duration
	addr          string
}

// Option configures Start.
type Option func(*config)

// WithClients registers clients in addition to the defaults; a client with
// the ID of a default one replaces it.
func WithClients(cs ...Client) Option {
	return func(c *config) { c.clients = append(c.clients, cs...) }
}

// WithoutDefaultClients registers only the clients given by WithClients.
func WithoutDefaultClients() Option { return func(c *config) { c.noDefaults = true } }

// WithTokenLifetime sets the lifetime of issued access tokens (default 5m).
func WithTokenLifetime(d time.Duration) Option {
	return func(c *config) { c.tokenLifetime = d }
}

// WithAddr listens on addr ("127.0.0.1:PORT") instead of a free port, e.g. to
// give a second server the issuer of an earlier one.
func WithAddr(addr string) Option { return func(c *config) { c.addr = addr } }

// T is what the server needs of a test to report failures and to stop
// with it; *testing.T and *testing.B are one. bench/tools runs the server
// from a program, with a T of its own.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Server is a running test AS.
type Server struct {
	issuer    string
	addr      string
	store     *storage
	endpoints op.Endpoints
	handler   http.Handler
	client    *http.Client

	mu  sync.Mutex
	srv *httptest.Server // nil while stopped

	stateMu sync.Mutex
	counts  map[string]int
	delay   time.Duration
}

// Start runs a test AS on 127.0.0.1 (a free port unless WithAddr) and stops
// it when the test ends.
func Start(t T, opts ...Option) *Server {
	t.Helper()
	cfg := config{tokenLifetime: 5 * time.Minute}
	for _, o := range opts {
		o(&cfg)
	}
	store, err := newStorage(cfg.tokenLifetime)
	if err != nil {
		t.Fatalf("testas: %v", err)
	}
	if !cfg.noDefaults {
		for _, c := range DefaultClients() {
			store.addClient(c)
		}
	}
	for _, c := range cfg.clients {
		store.addClient(c)
	}

	// The issuer must be known before the provider exists (StaticIssuer), so
	// the listener comes first.
	hs := httptest.NewUnstartedServer(nil)
	if cfg.addr != "" {
		l, err := net.Listen("tcp", cfg.addr)
		if err != nil {
			hs.Close()
			t.Fatalf("testas: listen %s: %v", cfg.addr, err)
		}
		hs.Listener.Close()
		hs.Listener = l
	}
	addr := hs.Listener.Addr().String()
	s := &Server{
		issuer: "http://" + addr,
		addr:   addr,
		store:  store,
		counts: map[string]int{},
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}},
	}

	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		t.Fatalf("testas: %v", err)
	}
	p, err := op.NewProvider(&op.Config{
		CryptoKey:               cryptoKey,
		AuthMethodPost:          true,
		AuthMethodPrivateKeyJWT: true,
	}, store, op.StaticIssuer(s.issuer), op.WithAllowInsecure())
	if err != nil {
		hs.Close()
		t.Fatalf("testas: provider: %v", err)
	}
	s.endpoints = p.Endpoints()
	// The legacy-server wrapper rather than the bare *op.Provider: the latter
	// refuses client_secret_post at introspection (401) and answers errors as
	// text/plain; this one accepts post and answers JSON errors.
	inner := op.RegisterLegacyServer(op.NewLegacyServer(p, s.endpoints), op.AuthorizeCallbackHandler(p))
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.stateMu.Lock()
		s.counts[r.URL.Path]++
		d := s.delay
		s.stateMu.Unlock()
		if d > 0 {
			tm := time.NewTimer(d)
			select {
			case <-tm.C:
			case <-r.Context().Done():
				// Client gave up or Stop closed the connection: answer
				// nothing, like a server that never got to it.
				tm.Stop()
				return
			}
		}
		inner.ServeHTTP(w, r)
	})
	hs.Config.Handler = s.handler
	hs.Start()
	s.srv = hs
	t.Cleanup(s.Stop)
	return s
}

// Issuer is "http://127.0.0.1:PORT"; it stays the same across Stop/Restart.
func (s *Server) Issuer() string { return s.issuer }

// Addr is "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.addr }

// Endpoint paths as the library registers them (op.DefaultEndpoints).
func (s *Server) TokenPath() string         { return s.endpoints.Token.Relative() }
func (s *Server) IntrospectionPath() string { return s.endpoints.Introspection.Relative() }
func (s *Server) RevocationPath() string    { return s.endpoints.Revocation.Relative() }
func (s *Server) JWKSPath() string          { return s.endpoints.JwksURI.Relative() }
func (s *Server) DiscoveryPath() string     { return oidc.DiscoveryEndpoint }

// Absolute endpoint URLs.
func (s *Server) TokenURL() string         { return s.issuer + s.TokenPath() }
func (s *Server) IntrospectionURL() string { return s.issuer + s.IntrospectionPath() }
func (s *Server) RevocationURL() string    { return s.issuer + s.RevocationPath() }
func (s *Server) JWKSURL() string          { return s.issuer + s.JWKSPath() }
func (s *Server) DiscoveryURL() string     { return s.issuer + s.DiscoveryPath() }

// AddClient registers c, replacing any client with the same ID.
func (s *Server) AddClient(c Client) { s.store.addClient(c) }

// TokenResponse is the token endpoint's answer.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	// ExpiresIn is negative for a token born expired (negative clock
	// offset). On the wire the library sends uint64(negative seconds), e.g.
	// 18446744073709551316 for -300; it is converted back here.
	ExpiresIn int64  `json:"-"`
	Scope     string `json:"scope"`
}

func (tr *TokenResponse) UnmarshalJSON(b []byte) error {
	type plain TokenResponse
	var aux struct {
		*plain
		ExpiresIn json.Number `json:"expires_in"`
	}
	aux.plain = (*plain)(tr)
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if aux.ExpiresIn == "" {
		return nil
	}
	if n, err := strconv.ParseInt(string(aux.ExpiresIn), 10, 64); err == nil {
		tr.ExpiresIn = n
		return nil
	}
	u, err := strconv.ParseUint(string(aux.ExpiresIn), 10, 64)
	if err != nil {
		return fmt.Errorf("expires_in %s: %w", aux.ExpiresIn, err)
	}
	tr.ExpiresIn = int64(u)
	return nil
}

// Token gets an access token for clientID by a real client_credentials grant
// (client_secret_basic) and returns it. No scopes means all of the client's.
func (s *Server) Token(t T, clientID string, scopes ...string) string {
	t.Helper()
	return s.TokenResponse(t, clientID, scopes...).AccessToken
}

// TokenResponse is Token returning the whole response.
func (s *Server) TokenResponse(t T, clientID string, scopes ...string) TokenResponse {
	t.Helper()
	c, ok := s.store.client(clientID)
	if !ok {
		t.Fatalf("testas: Token: unknown client %q", clientID)
	}
	form := url.Values{"grant_type": {string(oidc.GrantTypeClientCredentials)}}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	status, body := s.post(t, s.TokenURL(), c, form)
	if status != http.StatusOK {
		t.Fatalf("testas: token request for %q: %d %s", clientID, status, body)
	}
	var tr TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("testas: token response for %q: %v %s", clientID, err, body)
	}
	return tr
}

// Revoke revokes token by a real RFC 7009 request authenticated as clientID
// (client_secret_basic). Only the client the token was issued to may revoke it.
func (s *Server) Revoke(t T, clientID, token string) {
	t.Helper()
	c, ok := s.store.client(clientID)
	if !ok {
		t.Fatalf("testas: Revoke: unknown client %q", clientID)
	}
	status, body := s.post(t, s.RevocationURL(), c, url.Values{"token": {token}})
	if status != http.StatusOK {
		t.Fatalf("testas: revoke as %q: %d %s", clientID, status, body)
	}
}

func (s *Server) post(t T, u string, c Client, form url.Values) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("testas: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// RFC 6749 §2.3.1: id and secret are form-encoded before Basic; the
	// library unescapes them.
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("testas: POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("testas: POST %s: %v", u, err)
	}
	return resp.StatusCode, body
}

// RotateKey makes a new RS256 key the signing key for new JWTs. keepOld keeps
// the previous keys in the JWKS; otherwise the JWKS holds the new key alone
// (and JWTs signed before no longer verify, at introspection either).
func (s *Server) RotateKey(keepOld bool) (newKID string) {
	kid, err := s.store.rotate(keepOld)
	if err != nil {
		panic(fmt.Sprintf("testas: rotate key: %v", err))
	}
	return kid
}

// KeyID is the kid of the current signing key.
func (s *Server) KeyID() string {
	k, _ := s.store.SigningKey(context.Background())
	return k.ID()
}

// Requests counts requests received for a URL path, including ones that
// failed or were cut short by a delay.
func (s *Server) Requests(path string) int {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return s.counts[path]
}

func (s *Server) IntrospectionCalls() int { return s.Requests(s.IntrospectionPath()) }
func (s *Server) JWKSCalls() int          { return s.Requests(s.JWKSPath()) }
func (s *Server) TokenCalls() int         { return s.Requests(s.TokenPath()) }
func (s *Server) RevocationCalls() int    { return s.Requests(s.RevocationPath()) }

// ResetCounts zeroes all request counters.
func (s *Server) ResetCounts() {
	s.stateMu.Lock()
	s.counts = map[string]int{}
	s.stateMu.Unlock()
}

// SetClockOffset shifts the storage's clock (the library has no clock of its
// own to inject): iat/exp of tokens issued afterwards are storage-now based,
// and introspection calls a token expired once storage-now reaches its exp.
//
// To expire a token already issued, move the clock forward. A negative offset
// issues tokens whose exp is past by real time: a JWT is then dead on arrival
// (expires_in negative, and the library checks a JWT's exp against the real
// clock even at introspection; its iat/nbf are real time too), while an
// opaque token introspects active:true with a past exp, as an AS whose clock
// runs behind would answer.
func (s *Server) SetClockOffset(d time.Duration) {
	s.store.mu.Lock()
	s.store.clockOffset = d
	s.store.mu.Unlock()
}

// SetDelay makes every request wait d before it is handled. A request whose
// client gives up (or that is cut off by Stop) gets no answer.
func (s *Server) SetDelay(d time.Duration) {
	s.stateMu.Lock()
	s.delay = d
	s.stateMu.Unlock()
}

// Stop closes the listener and every open connection, as an AS outage would.
// It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	hs := s.srv
	s.srv = nil
	s.mu.Unlock()
	if hs == nil {
		return
	}
	// Close alone waits for active requests; closing the connections first
	// cancels their contexts, so a delayed request does not hold Stop up.
	hs.CloseClientConnections()
	hs.Close()
	s.client.CloseIdleConnections()
}

// Restart serves again on the same address (so the same issuer) with the
// same clients, tokens and keys.
func (s *Server) Restart(t T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		t.Fatalf("testas: restart on %s: %v", s.addr, err)
	}
	hs := &httptest.Server{Listener: l, Config: &http.Server{Handler: s.handler}}
	hs.Start()
	s.srv = hs
}

// Running reports whether the server is serving (not stopped).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil
}
