package caddymodule

import (
	"bytes"
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
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/auth/extauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokengate/tokengate/internal/nodeas"
)

// A real MCP client and server (the official Go SDK) with the gateway in
// between, against node-oidc-provider, which issues audience-bound JWT
// access tokens for an RFC 8707 resource indicator: the client starts with
// no token, gets the 401, finds the authorization server through the
// gateway's RFC 9728 metadata, gets a token for the MCP URL, and calls a
// tool.

// whoami is the test server's tool: it reports what the gateway forwarded.
type whoamiIn struct {
	Name string `json:"name"`
}

type whoamiOut struct {
	Greeting string `json:"greeting"`
	// Client and Audience are the token's client_id and aud, as the
	// gateway forwards them (forward_claim).
	Client   string `json:"client"`
	Audience string `json:"audience"`
	// SawToken reports whether the caller's token reached the server
	// (strip_authorization removes it).
	SawToken bool `json:"saw_token"`
}

// startMCPServer runs the SDK's Streamable HTTP handler with the whoami
// tool, as an upstream for the gateway.
func startMCPServer(t *testing.T) *httptest.Server {
	t.Helper()
	server := mcp.NewServer(&mcp.Implementation{Name: "tokengate-test-server", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "Says who called, as the gateway tells it"},
		func(_ context.Context, req *mcp.CallToolRequest, in whoamiIn) (*mcp.CallToolResult, whoamiOut, error) {
			h := req.Extra.Header
			return nil, whoamiOut{Greeting: "hello " + in.Name, Client: h.Get("X-Client-Id"),
				Audience: h.Get("X-Token-Aud"), SawToken: h.Get("Authorization") != ""}, nil
		})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	t.Cleanup(up.Close)
	return up
}

// mcpGatewaySite guards the whole site, so the metadata path is behind
// bearer_auth too: the handler answers it before authentication.
func mcpGatewaySite(as *nodeas.Server, resource, upstream string) string {
	return fmt.Sprintf(`	bearer_auth {
		issuer %s
		scopes tools:call
		jwt
		resource_metadata {
			resource %s
			resource_name "tokengate test MCP server"
		}
		forward_claim client_id X-Client-Id
		forward_claim aud X-Token-Aud
		strip_authorization
	}
	reverse_proxy %s`, as.Issuer(), resource, strings.TrimPrefix(upstream, "http://"))
}

// startMCPGateway starts Caddy in front of the MCP server, with the MCP
// URL on Caddy's own port as the resource.
func startMCPGateway(t *testing.T, as *nodeas.Server) (tc *testCaddy, mcpURL string) {
	t.Helper()
	up := startMCPServer(t)
	tc = startCaddyFor(t, func(base string) string { return mcpGatewaySite(as, base+"/mcp", up.URL) })
	return tc, tc.base + "/mcp"
}

// recorder keeps every request made through it, for assertions on what a
// client sent (never changing it).
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, url string
	form        url.Values
	status      int
	// withToken: the request carried an Authorization header.
	withToken bool
	err       error
}

func (rec *recorder) client() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: rec.wrap(http.DefaultTransport.(*http.Transport).Clone())}
}

func (rec *recorder) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		r := recorded{method: req.Method, url: req.URL.String(), withToken: req.Header.Get("Authorization") != ""}
		if req.Body != nil && strings.HasPrefix(req.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			b, err := io.ReadAll(req.Body)
			if err != nil {
				return nil, err
			}
			req.Body = io.NopCloser(bytes.NewReader(b))
			r.form, _ = url.ParseQuery(string(b))
		}
		resp, err := rt.RoundTrip(req)
		if resp != nil {
			r.status = resp.StatusCode
		}
		r.err = err
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r)
		rec.mu.Unlock()
		return resp, err
	})
}

func (rec *recorder) to(u string) []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []recorded
	for _, r := range rec.reqs {
		if r.url == u {
			out = append(out, r)
		}
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// machineClient is the OAuth side of an MCP client that runs unattended
// (client_credentials, RFC 6749 §4.4), configured as the README says
// machine clients must be: its client id and secret, and the scope it was
// given, which it asks for whatever a challenge's scope= says.
//
// It implements the SDK's auth.OAuthHandler, so the SDK's Streamable HTTP
// transport drives the flow: it sends the request without a token, hands
// the 401 to Authorize, and retries with the token. Authorize does the
// discovery with the SDK's own exported functions, in the order the SDK's
// handlers do: oauthex.ParseWWWAuthenticate (the resource_metadata of the
// Bearer challenge), oauthex.GetProtectedResourceMetadata (which also
// checks that the document's resource is the MCP URL, RFC 9728 §3.3) and
// auth.GetAuthServerMetadata (RFC 8414, then OpenID discovery). The token
// request is golang.org/x/oauth2's clientcredentials, as in the SDK's
// extauth.ClientCredentialsHandler, plus what that handler (v1.8.0) does not
// send: resource=<the metadata's resource> (RFC 8707 §2), without which the
// token is not for this API.
type machineClient struct {
	id, secret string
	scopes     []string
	http       *http.Client

	mu         sync.Mutex
	ts         oauth2.TokenSource
	challenges [][]oauthex.Challenge // of each Authorize call
	statuses   []int
	prm        *oauthex.ProtectedResourceMetadata
	asm        *oauthex.AuthServerMeta
}

var _ auth.OAuthHandler = (*machineClient)(nil)

func (c *machineClient) TokenSource(context.Context) (oauth2.TokenSource, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ts, nil
}

func (c *machineClient) Authorize(ctx context.Context, req *http.Request, resp *http.Response) error {
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	cs, err := oauthex.ParseWWWAuthenticate(resp.Header.Values("WWW-Authenticate"))
	c.mu.Lock()
	c.challenges = append(c.challenges, cs)
	c.statuses = append(c.statuses, resp.StatusCode)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if len(cs) == 0 || cs[0].Scheme != "bearer" || cs[0].Params["resource_metadata"] == "" {
		return fmt.Errorf("no Bearer challenge with resource_metadata in %q", resp.Header.Values("WWW-Authenticate"))
	}
	prm, err := oauthex.GetProtectedResourceMetadata(ctx, cs[0].Params["resource_metadata"], req.URL.String(), c.http)
	if err != nil {
		return err
	}
	if len(prm.AuthorizationServers) == 0 {
		return errors.New("the metadata names no authorization server")
	}
	asm, err := auth.GetAuthServerMetadata(ctx, prm.AuthorizationServers[0], c.http)
	if err != nil || asm == nil {
		return fmt.Errorf("authorization server metadata of %s: %v", prm.AuthorizationServers[0], err)
	}
	cfg := clientcredentials.Config{ClientID: c.id, ClientSecret: c.secret, TokenURL: asm.TokenEndpoint,
		Scopes: c.scopes, EndpointParams: url.Values{"resource": {prm.Resource}}}
	ts := cfg.TokenSource(context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, c.http))
	if _, err := ts.Token(); err != nil {
		return fmt.Errorf("token request: %w", err)
	}
	c.mu.Lock()
	c.ts, c.prm, c.asm = ts, prm, asm
	c.mu.Unlock()
	return nil
}

func callWhoami(ctx context.Context, t *testing.T, s *mcp.ClientSession) whoamiOut {
	t.Helper()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{"name": "gateway"}})
	if err != nil {
		t.Fatalf("calling the tool: %v", err)
	}
	if res.IsError {
		t.Fatalf("tool error: %+v", res.Content)
	}
	b, _ := json.Marshal(res.StructuredContent)
	var out whoamiOut
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("tool result %s: %v", b, err)
	}
	return out
}

func TestMCPClientDiscoversTheAuthorizationServerThroughTheGateway(t *testing.T) {
	as := nodeas.Start(t, nodeas.WithClients(nodeas.Client{ID: "mcp-agent", Secret: "agent-secret", Scopes: []string{"tools:call"}}))
	tc, mcpURL := startMCPGateway(t, as)
	rec := &recorder{}
	hc := rec.client()
	oauth := &machineClient{id: "mcp-agent", secret: "agent-secret", scopes: []string{"tools:call"}, http: hc}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "tokengate-test-agent", Version: "1.0.0"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: mcpURL, HTTPClient: hc, OAuthHandler: oauth}, nil)
	if err != nil {
		t.Fatalf("connecting through the gateway: %v\n%s", err, tc.logs())
	}
	defer session.Close()

	out := callWhoami(ctx, t, session)
	if want := (whoamiOut{Greeting: "hello gateway", Client: "mcp-agent", Audience: mcpURL}); out != want {
		t.Errorf("tool result %+v, want %+v", out, want)
	}
	// Once discovered, the token is reused: a second call needs nothing new.
	callWhoami(ctx, t, session)

	// 1. The first request went without a token and got the 401 challenge.
	first := rec.to(mcpURL)
	if len(first) == 0 || first[0].status != http.StatusUnauthorized {
		t.Fatalf("requests to %s: %+v, want a 401 first", mcpURL, first)
	}
	metadataURL := tc.base + "/.well-known/oauth-protected-resource/mcp"
	if len(oauth.challenges) != 1 || oauth.statuses[0] != http.StatusUnauthorized {
		t.Fatalf("Authorize called %d times (statuses %v), want once, for the 401", len(oauth.challenges), oauth.statuses)
	}
	ch := oauth.challenges[0][0]
	if ch.Params["resource_metadata"] != metadataURL || ch.Params["scope"] != "tools:call" {
		t.Errorf("challenge %v, want resource_metadata %s and scope tools:call", ch.Params, metadataURL)
	}
	// 2. The metadata, through the gateway, without a token.
	if got := rec.to(metadataURL); len(got) != 1 || got[0].status != http.StatusOK {
		t.Errorf("metadata requests %+v, want one 200", got)
	}
	if p := oauth.prm; p.Resource != mcpURL || !slices.Equal(p.AuthorizationServers, []string{as.Issuer()}) ||
		!slices.Equal(p.ScopesSupported, []string{"tools:call"}) || !slices.Equal(p.BearerMethodsSupported, []string{"header"}) ||
		p.ResourceName != "tokengate test MCP server" {
		t.Errorf("metadata %+v", p)
	}
	// 3. The authorization server's own metadata, found from there.
	if oauth.asm.Issuer != as.Issuer() || oauth.asm.TokenEndpoint != as.TokenURL() {
		t.Errorf("authorization server metadata: issuer %s, token endpoint %s", oauth.asm.Issuer, oauth.asm.TokenEndpoint)
	}
	// 4. One token request, for the MCP URL as resource and the scope the
	// client was given.
	tokenReqs := rec.to(as.TokenURL())
	if len(tokenReqs) != 1 || tokenReqs[0].form.Get("resource") != mcpURL || tokenReqs[0].form.Get("scope") != "tools:call" ||
		tokenReqs[0].form.Get("grant_type") != "client_credentials" || tokenReqs[0].status != http.StatusOK {
		t.Errorf("token requests %+v, want one client_credentials grant with resource=%s scope=tools:call", tokenReqs, mcpURL)
	}
	// 5. Every request after the first carried the token and got through.
	for _, r := range rec.to(mcpURL)[1:] {
		if r.status >= 400 {
			t.Errorf("%s %s after authorization: %d", r.method, r.url, r.status)
		}
	}
	// The gateway logged the exchange (debug level here), never the token.
	tok, err := oauth.ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if logs := tc.logs(); !strings.Contains(logs, `"outcome":"allowed"`) || strings.Contains(logs, tok.AccessToken) {
		t.Error("the gateway's log has no allowed decision, or has the token")
	}
}

// The SDK's own extauth.ClientCredentialsHandler (v1.8.0) follows the same
// discovery but sends no resource indicator: the token it gets is not meant
// for this API (node-oidc-provider issues an opaque token with no audience),
// and the gateway refuses it instead of letting it through.
func TestMCPTokenWithoutResourceIndicatorIsRefused(t *testing.T) {
	as := nodeas.Start(t, nodeas.WithClients(nodeas.Client{ID: "mcp-agent", Secret: "agent-secret", Scopes: []string{"tools:call"}}))
	tc, mcpURL := startMCPGateway(t, as)
	rec := &recorder{}
	hc := rec.client()
	h, err := extauth.NewClientCredentialsHandler(&extauth.ClientCredentialsHandlerConfig{
		Credentials: &oauthex.ClientCredentials{ClientID: "mcp-agent", ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: "agent-secret"}},
		HTTPClient:  hc,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "tokengate-test-agent", Version: "1.0.0"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: mcpURL, HTTPClient: hc, OAuthHandler: h, MaxRetries: -1}, nil)
	if err == nil {
		session.Close()
		t.Fatal("connected with a token that is not for this API")
	}
	// The SDK tries the discover request, then the legacy initialize, and
	// authorizes for each: every token it got was asked for without a
	// resource, and every request carrying one was refused.
	tokenReqs := rec.to(as.TokenURL())
	if len(tokenReqs) == 0 {
		t.Fatal("no token request")
	}
	for _, r := range tokenReqs {
		if r.status != http.StatusOK || r.form.Has("resource") {
			t.Errorf("token request %+v, want a granted one without resource", r)
		}
	}
	withToken := 0
	for _, r := range rec.to(mcpURL) {
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s %s (token: %v): %d %v, want 401", r.method, r.url, r.withToken, r.status, r.err)
		}
		if r.withToken {
			withToken++
		}
	}
	if withToken == 0 {
		t.Error("no request carried the token")
	}
	if !strings.Contains(tc.logs(), `"outcome":"invalid_token"`) {
		t.Errorf("the gateway did not log the retry as invalid_token:\n%s", tc.logs())
	}
}
