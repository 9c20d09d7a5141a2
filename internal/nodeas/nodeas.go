// Package nodeas runs node-oidc-provider (panva) as a child process for tests:
// a second, independent authorization server next to internal/testas
// (zitadel op), so the gateway is also tested against an AS that behaves
// differently. Most visibly, its introspection (and revocation) endpoint
// answers every JWT-shaped token — three or five dot-separated segments, the
// first decoding to a JSON object, so JWS and JWE alike, junk or genuine —
// with HTTP 400 {"error":"unsupported_token_type",...}, where testas answers
// {"active":false}. Other unknown tokens get 200 {"active":false}.
//
// The server is server.mjs in this directory, started with node on a free
// loopback port; its npm dependencies (package.json, pinned, no lock file)
// are installed into node_modules automatically, once per test binary, when
// missing or stale. Tokens come from real client_credentials grants: opaque
// without a resource indicator, RS256 JWT access tokens (aud = the resource)
// with one (RFC 8707). DPoP (RFC 9449) is enabled.
//
// Without node (>= 20.18) or npm the tests skip, except under CI=true, where
// they fail: a CI run must not pass by skipping them.
package nodeas

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Client is an OAuth client registered at the server. Every client may use
// the client_credentials grant and authenticates with client_secret_basic or
// client_secret_post (oidc-provider accepts either for a client registered
// with one of them).
type Client struct {
	ID, Secret string
	// Scopes the client may request. Token without scopes requests all of
	// them (oidc-provider itself would issue a token without scope).
	Scopes []string
	// CanIntrospect lets the client get real introspection answers about any
	// client's token; every other client gets {"active":false}, as in testas.
	CanIntrospect bool
	// Metadata is further oidc-provider client metadata (snake_case, as in
	// its documentation), applied over what the fields above produce, e.g.
	// {"dpop_bound_access_tokens": true} or a "jwks" for private_key_jwt.
	Metadata map[string]any
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
	}
}

type config struct {
	clients       []Client
	noDefaults    bool
	tokenLifetime time.Duration
	resources     map[string]map[string]any
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

// WithTokenLifetime sets the lifetime of issued access tokens, opaque and
// JWT (default 5m; whole seconds, at least 1 s).
func WithTokenLifetime(d time.Duration) Option {
	return func(c *config) { c.tokenLifetime = d }
}

// WithResourceServer overrides, for one resource indicator, the resource
// server information server.mjs hands to oidc-provider (its
// features.resourceIndicators.getResourceServerInfo result). The default for
// any resource is {"scope": <all scopes>, "audience": resource,
// "accessTokenFormat": "jwt", "jwt": {"sign": {"alg": "RS256"}}}; for
// example {"jwt": {"sign": {"alg": "ES256"}}} signs its tokens with the
// server's P-256 key, {"accessTokenFormat": "opaque"} makes them opaque.
func WithResourceServer(resource string, info map[string]any) Option {
	return func(c *config) {
		if c.resources == nil {
			c.resources = map[string]map[string]any{}
		}
		c.resources[resource] = info
	}
}

// Endpoint paths; server.mjs sets the same ones explicitly.
const (
	tokenPath         = "/token"
	introspectionPath = "/token/introspection"
	revocationPath    = "/token/revocation"
	jwksPath          = "/jwks"
	discoveryPath     = "/.well-known/openid-configuration"
	statsPath         = "/__nodeas/stats"
)

// Server is a running (or stopped) node-oidc-provider child process.
type Server struct {
	node     string
	dir      string // this package's directory: server.mjs, node_modules
	port     int
	issuer   string
	stateDir string // keys, stored tokens and counts: the same across Restart
	cfgFile  string
	clients  map[string]Client
	client   *http.Client
	stderr   *tailBuffer

	mu   sync.Mutex
	proc *proc // nil while stopped
}

type proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{} // closed once cmd has been reaped
}

// Start runs server.mjs on a free 127.0.0.1 port and stops it when the test
// ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	node, dir := requireDeps(t)

	cfg := config{tokenLifetime: 5 * time.Minute}
	for _, o := range opts {
		o(&cfg)
	}
	clients := map[string]Client{}
	var order []string
	add := func(c Client) {
		if _, ok := clients[c.ID]; !ok {
			order = append(order, c.ID)
		}
		clients[c.ID] = c
	}
	if !cfg.noDefaults {
		for _, c := range DefaultClients() {
			add(c)
		}
	}
	for _, c := range cfg.clients {
		add(c)
	}
	var ordered []Client
	for _, id := range order {
		ordered = append(ordered, clients[id])
	}

	s := &Server{
		node:     node,
		dir:      dir,
		stateDir: t.TempDir(),
		clients:  clients,
		client:   &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}},
		stderr:   &tailBuffer{max: 64 << 10},
	}
	s.cfgFile = filepath.Join(s.stateDir, "config.json")
	b, err := json.Marshal(nodeConfig(ordered, cfg))
	if err != nil {
		t.Fatalf("nodeas: config: %v", err)
	}
	if err := os.WriteFile(s.cfgFile, b, 0o600); err != nil {
		t.Fatalf("nodeas: %v", err)
	}
	// After TempDir, so it runs before the directory is removed: node writes
	// its counts there on the way out.
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			if e := s.stderr.String(); e != "" {
				t.Logf("nodeas stderr:\n%s", e)
			}
		}
	})

	// A port picked by listening on :0 can be taken by someone else before
	// node binds it; retry with a new port in that case.
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("nodeas: free port: %v", err)
		}
		s.port = port
		s.issuer = "http://127.0.0.1:" + strconv.Itoa(port)
		p, inUse, err := s.start()
		if err == nil {
			s.proc = p
			return s
		}
		if !inUse {
			t.Fatalf("nodeas: %v", err)
		}
	}
	t.Fatalf("nodeas: no free port after 5 attempts")
	return nil
}

// nodeConfig is the JSON server.mjs reads (see its header comment).
func nodeConfig(clients []Client, cfg config) map[string]any {
	var cs []map[string]any
	for _, c := range clients {
		m := map[string]any{"client_id": c.ID}
		if c.Secret != "" {
			m["client_secret"] = c.Secret
		}
		if len(c.Scopes) > 0 {
			m["scope"] = strings.Join(c.Scopes, " ")
		}
		if c.CanIntrospect {
			m["can_introspect"] = true
		}
		for k, v := range c.Metadata {
			m[k] = v
		}
		cs = append(cs, m)
	}
	ttl := int((cfg.tokenLifetime + time.Second - 1) / time.Second)
	return map[string]any{
		"clients":   cs,
		"token_ttl": max(ttl, 1),
		"resources": cfg.resources,
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs node and waits for its READY line. inUse reports that the port
// was taken (server.mjs exits with status 2 then).
func (s *Server) start() (p *proc, inUse bool, err error) {
	cmd := exec.Command(s.node, "server.mjs",
		"--port", strconv.Itoa(s.port),
		"--config", s.cfgFile,
		"--state", s.stateDir)
	cmd.Dir = s.dir
	cmd.Stderr = s.stderr
	// stdin is the child's lifeline: it exits when the pipe closes, which
	// also happens when this test binary dies without running Stop.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, false, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, false, err
	}
	if err := cmd.Start(); err != nil {
		return nil, false, fmt.Errorf("start node: %w", err)
	}
	p = &proc{cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	ready := make(chan struct{})
	want := "READY " + strconv.Itoa(s.port)
	go func() {
		// stdout must be read to EOF before Wait (os/exec's rule).
		sc := bufio.NewScanner(stdout)
		signaled := false
		for sc.Scan() {
			if !signaled && sc.Text() == want {
				signaled = true
				close(ready)
				continue
			}
			// server.mjs writes nothing else to stdout; keep anything that
			// shows up anyway for the diagnostics.
			fmt.Fprintf(s.stderr, "stdout: %s\n", sc.Text())
		}
		_ = cmd.Wait()
		close(p.exited)
	}()

	// Cold start (module load, first key generation) takes about half a
	// second; the bound is for a loaded 2-core machine.
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case <-ready:
		return p, false, nil
	case <-p.exited:
		code := cmd.ProcessState.ExitCode()
		return nil, code == 2, fmt.Errorf("server.mjs on port %d exited with status %d before READY:\n%s", s.port, code, s.stderr.String())
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-p.exited
		return nil, false, fmt.Errorf("server.mjs on port %d not READY within 30s:\n%s", s.port, s.stderr.String())
	}
}

// Issuer is "http://127.0.0.1:PORT"; it stays the same across Stop/Restart.
func (s *Server) Issuer() string { return s.issuer }

// Addr is "127.0.0.1:PORT".
func (s *Server) Addr() string { return strings.TrimPrefix(s.issuer, "http://") }

// Endpoint paths, as registered by server.mjs.
func (s *Server) TokenPath() string         { return tokenPath }
func (s *Server) IntrospectionPath() string { return introspectionPath }
func (s *Server) RevocationPath() string    { return revocationPath }
func (s *Server) JWKSPath() string          { return jwksPath }
func (s *Server) DiscoveryPath() string     { return discoveryPath }

// Absolute endpoint URLs.
func (s *Server) TokenURL() string         { return s.issuer + tokenPath }
func (s *Server) IntrospectionURL() string { return s.issuer + introspectionPath }
func (s *Server) RevocationURL() string    { return s.issuer + revocationPath }
func (s *Server) JWKSURL() string          { return s.issuer + jwksPath }
func (s *Server) DiscoveryURL() string     { return s.issuer + discoveryPath }

// TokenRequest is a client_credentials token request.
type TokenRequest struct {
	ClientID string
	// Scopes to request; none means all of the client's.
	Scopes []string
	// Resource is an RFC 8707 resource indicator. With one, the token is a
	// JWT access token whose aud is the resource; without, it is opaque.
	Resource string
	// DPoP, if set, is sent as the DPoP header (an RFC 9449 proof JWT for
	// POST TokenURL()); the token is then DPoP-bound (token_type DPoP).
	DPoP string
}

// TokenResponse is the token endpoint's answer.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// Token gets an opaque access token for clientID by a real client_credentials
// grant (client_secret_basic) and returns it. No scopes means all of the
// client's.
func (s *Server) Token(t testing.TB, clientID string, scopes ...string) string {
	t.Helper()
	return s.RequestToken(t, TokenRequest{ClientID: clientID, Scopes: scopes}).AccessToken
}

// TokenWithResource gets a JWT access token for clientID whose aud is
// resource (an absolute URI).
func (s *Server) TokenWithResource(t testing.TB, clientID, resource string, scopes ...string) string {
	t.Helper()
	return s.RequestToken(t, TokenRequest{ClientID: clientID, Scopes: scopes, Resource: resource}).AccessToken
}

// RequestToken performs r and fails the test unless the server issues a token.
func (s *Server) RequestToken(t testing.TB, r TokenRequest) TokenResponse {
	t.Helper()
	c := s.clientFor(t, r.ClientID)
	scopes := r.Scopes
	if len(scopes) == 0 {
		scopes = c.Scopes
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	if r.Resource != "" {
		form.Set("resource", r.Resource)
	}
	var hdr http.Header
	if r.DPoP != "" {
		hdr = http.Header{"Dpop": {r.DPoP}}
	}
	status, body := s.post(t, s.TokenURL(), c, form, hdr)
	if status != http.StatusOK {
		t.Fatalf("nodeas: token request for %q: %d %s", r.ClientID, status, body)
	}
	var tr TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		// The body may hold a token; say only what is wrong with it.
		t.Fatalf("nodeas: token response for %q: unusable (%v, %d bytes)", r.ClientID, err, len(body))
	}
	return tr
}

// Revoke revokes token by a real RFC 7009 request authenticated as clientID
// (client_secret_basic). Only the client the token was issued to may revoke
// it; JWTs cannot be revoked (400 unsupported_token_type).
func (s *Server) Revoke(t testing.TB, clientID, token string) {
	t.Helper()
	c := s.clientFor(t, clientID)
	status, body := s.post(t, s.RevocationURL(), c, url.Values{"token": {token}}, nil)
	if status != http.StatusOK {
		t.Fatalf("nodeas: revoke as %q: %d %s", clientID, status, body)
	}
}

func (s *Server) clientFor(t testing.TB, id string) Client {
	t.Helper()
	c, ok := s.clients[id]
	if !ok {
		t.Fatalf("nodeas: unknown client %q", id)
	}
	return c
}

func (s *Server) post(t testing.TB, u string, c Client, form url.Values, hdr http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("nodeas: %v", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// RFC 6749 §2.3.1: id and secret are form-encoded before Basic;
	// oidc-provider decodes them.
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("nodeas: POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("nodeas: POST %s: %v", u, err)
	}
	return resp.StatusCode, body
}

// Requests counts requests received for a URL path since Start (or
// ResetCounts), across restarts, including ones that failed. server.mjs
// counts them before oidc-provider sees them; the count is read from its
// test-only stats endpoint, or while stopped from the file it leaves behind.
// It panics if the count cannot be read.
func (s *Server) Requests(path string) int {
	counts, err := s.counts()
	if err != nil {
		panic(fmt.Sprintf("nodeas: request counts: %v", err))
	}
	return counts[path]
}

func (s *Server) IntrospectionCalls() int { return s.Requests(introspectionPath) }
func (s *Server) TokenCalls() int         { return s.Requests(tokenPath) }
func (s *Server) RevocationCalls() int    { return s.Requests(revocationPath) }
func (s *Server) JWKSCalls() int          { return s.Requests(jwksPath) }

func (s *Server) counts() (map[string]int, error) {
	var b []byte
	if s.Running() {
		resp, err := s.client.Get(s.issuer + statsPath)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if b, err = io.ReadAll(resp.Body); err != nil {
			return nil, err
		}
		var v struct {
			Counts map[string]int `json:"counts"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
		return v.Counts, nil
	}
	b, err := os.ReadFile(filepath.Join(s.stateDir, "stats.json"))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]int{}, nil
	}
	if err != nil {
		return nil, err
	}
	var c map[string]int
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("stats.json: %w", err)
	}
	return c, nil
}

// ResetCounts zeroes all request counters. It panics if they cannot be reset.
func (s *Server) ResetCounts() {
	if !s.Running() {
		if err := os.Remove(filepath.Join(s.stateDir, "stats.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			panic(fmt.Sprintf("nodeas: reset counts: %v", err))
		}
		return
	}
	req, _ := http.NewRequest(http.MethodDelete, s.issuer+statsPath, nil)
	resp, err := s.client.Do(req)
	if err != nil {
		panic(fmt.Sprintf("nodeas: reset counts: %v", err))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// Stop ends the node process, as an AS outage would: the listener goes away
// and open connections are cut. It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	// Closing stdin is the polite way: server.mjs saves its request counts
	// and exits. Kill if it does not.
	_ = p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	s.client.CloseIdleConnections()
}

// Restart serves again on the same port, so with the same issuer, clients,
// signing keys and issued tokens (they live in the state directory).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return
	}
	// The port was just released by our own process, so "in use" means
	// someone else took it meanwhile; give it a moment in case it is fleeting.
	var err error
	for range 20 {
		var p *proc
		var inUse bool
		if p, inUse, err = s.start(); err == nil {
			s.proc = p
			return
		}
		if !inUse {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("nodeas: restart on port %d: %v", s.port, err)
}

// Running reports whether the server is serving (not stopped).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}
