package caddymodule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tokengate/tokengate/internal/testas"
	"github.com/tokengate/tokengate/introspect"
)

// gatewayKey is a private_key_jwt key of the gateway, written as PKCS#8 PEM.
func gatewayKey(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(pk)
	path := filepath.Join(t.TempDir(), "gateway.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return pk, path
}

// keyClient registers a gateway client that authenticates with
// private_key_jwt only, and writes its private key as PKCS#8 PEM.
func keyClient(t *testing.T) (testas.Option, string) {
	t.Helper()
	pk, path := gatewayKey(t)
	return testas.WithClients(testas.Client{ID: "gw-key", PublicKey: &pk.PublicKey, KeyID: "gw-1", CanIntrospect: true}), path
}

// endpointAudienceFront is an introspection endpoint that authenticates the
// gateway by private_key_jwt the way Okta does: the assertion's aud must be
// exactly the URL the request was sent to (Okta: "The audience claim for
// client_assertion must be the endpoint invoked for the request"). The
// in-process AS (zitadel) insists on its issuer instead, so, like the
// client_secret_jwt front of the introspect tests, this one verifies the
// assertion itself — ES256 signature by the client's key under its kid,
// iss = sub = client_id, aud = its own URL, exp, iat, jti not replayed —
// and then asks the real AS with the AS's own "gateway" client. The answer
// about the token is always the real AS's.
type endpointAudienceFront struct {
	url string // the introspection endpoint, the only aud accepted

	mu   sync.Mutex
	auds []string // aud of every assertion that verified
	jtis map[string]bool
}

func newEndpointAudienceFront(t *testing.T, as *testas.Server, clientID, kid string, pub *ecdsa.PublicKey) *endpointAudienceFront {
	f := &endpointAudienceFront{jtis: map[string]bool{}}
	const path = "/oauth2/v1/introspect"
	fail := func(w http.ResponseWriter, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": desc})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.PostForm.Get("client_assertion_type") != introspect.ClientAssertionTypeJWTBearer || r.PostForm.Get("client_id") != clientID {
			fail(w, "Invalid value for 'client_assertion_type' or 'client_id'.")
			return
		}
		a := []byte(r.PostForm.Get("client_assertion"))
		msg, err := jws.Parse(a)
		if err != nil || len(msg.Signatures()) != 1 || msg.Signatures()[0].ProtectedHeaders().KeyID() != kid {
			fail(w, "The client_assertion token has no kid or an unknown one.")
			return
		}
		if _, err := jws.Verify(a, jws.WithKey(jwa.ES256, pub)); err != nil {
			fail(w, "The client_assertion signature is invalid.")
			return
		}
		tk, err := jwt.Parse(a, jwt.WithVerify(false), jwt.WithValidate(true),
			jwt.WithIssuer(clientID), jwt.WithSubject(clientID), jwt.WithAudience(f.url),
			jwt.WithRequiredClaim("iat"), jwt.WithRequiredClaim("exp"), jwt.WithRequiredClaim("jti"))
		if err != nil {
			if strings.Contains(err.Error(), "aud") {
				fail(w, "The audience claim for client_assertion must be the endpoint invoked for the request.")
			} else {
				fail(w, "The client_assertion token is expired or not valid.")
			}
			return
		}
		f.mu.Lock()
		replay := f.jtis[tk.JwtID()]
		f.jtis[tk.JwtID()] = true
		if !replay {
			f.auds = append(f.auds, strings.Join(tk.Audience(), " "))
		}
		f.mu.Unlock()
		if replay {
			fail(w, "The client_assertion token has already been used.")
			return
		}
		form := url.Values{"token": {r.PostForm.Get("token")}}
		req, _ := http.NewRequest(http.MethodPost, as.IntrospectionURL(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(testas.GatewayID, testas.GatewaySecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL + path
	return f
}

// accepted lists the aud of every assertion the front accepted.
func (f *endpointAudienceFront) accepted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auds...)
}

// keySite is a route whose gateway authenticates with private_key_jwt.
func keySite(as *testas.Server, keyFile, extra string) string {
	return fmt.Sprintf(`	bearer_auth {
		issuer %s
		introspect {
			client_id gw-key
			auth_method private_key_jwt
			private_key %s gw-1
%s
		}
	}
	respond "ok {http.auth.user.id}"`, as.Issuer(), keyFile, extra)
}

func TestPrivateKeyJWTAuthenticatesTheGateway(t *testing.T) {
	t.Parallel()
	opt, keyFile := keyClient(t)
	as := testas.Start(t, opt)
	tc := startCaddy(t, keySite(as, keyFile, ""))
	if r := tc.get("/", "Bearer "+as.Token(t, "svc-a", "read")); r.status != 200 || r.body != "ok svc-a" {
		t.Fatalf("got %d %q\n%s", r.status, r.body, tc.logs())
	}
}

func TestRejectedAssertionAudienceIs503WithAnAudienceHint(t *testing.T) {
	t.Parallel()
	opt, keyFile := keyClient(t)
	as := testas.Start(t, opt)
	tc := startCaddy(t, keySite(as, keyFile, "\t\t\tassertion_audience "+as.IntrospectionURL()))
	r := tc.get("/", "Bearer "+as.Token(t, "svc-a", "read"))
	if r.status != 503 || r.header.Get("WWW-Authenticate") != "" {
		t.Fatalf("got %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	logs := tc.logs()
	if !strings.Contains(logs, `"as_error":"unauthorized_client"`) || !strings.Contains(logs, "assertion_audience") {
		t.Errorf("the log line does not point at the assertion audience:\n%s", logs)
	}
}

func TestPrivateKeyJWTConfigErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ block, want string }{
		{`introspect {
			endpoint https://as/introspect
			client_id gw
			auth_method private_key_jwt
		}`, "auth_method private_key_jwt needs private_key"},
		{`introspect {
			endpoint https://as/introspect
			client_id gw
			client_secret s
			auth_method bearer
		}`, "auth_method bearer needs token_endpoint"},
		{`issuer https://as
		introspect {
			client_id gw
			client_secret s
			auth_method client_secret_jwt
			assertion_lifetime 24h
		}`, "assertion_lifetime 24h0m0s is longer than 1h0m0s"},
	} {
		cfg, err := adaptCaddyfile(fmt.Sprintf("{\n\tadmin off\n}\n:0 {\n\tbearer_auth {\n\t\t%s\n\t}\n}\n", tt.block))
		if err != nil {
			t.Fatal(err)
		}
		if err := caddyValidate(t, cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("err = %v, want %q", err, tt.want)
		}
	}
}

// Issue 10 item 10: a config with only an endpoint (no issuer, no
// assertion_audience) used to refuse to start. The assertion's aud is now
// the URL it is sent to, which servers such as Okta require.
func TestPrivateKeyJWTWithOnlyAnEndpointUsesItsURLAsAudience(t *testing.T) {
	t.Parallel()
	pk, keyFile := gatewayKey(t)
	as := testas.Start(t)
	front := newEndpointAudienceFront(t, as, "gw-key", "gw-1", &pk.PublicKey)
	site := func(extra string) string {
		return fmt.Sprintf(`	bearer_auth {
		introspect {
			endpoint %s
			client_id gw-key
			auth_method private_key_jwt
			private_key %s gw-1
%s
		}
	}
	respond "ok {http.auth.user.id}"`, front.url, keyFile, extra)
	}
	tc := startCaddy(t, site(""))
	if r := tc.get("/", "Bearer "+as.Token(t, "svc-a", "read")); r.status != 200 || r.body != "ok svc-a" {
		t.Fatalf("valid token: %d %q\n%s", r.status, r.body, tc.logs())
	}
	// The real AS answers through the front: an unknown token is inactive.
	if r := tc.get("/", "Bearer not-a-token-of-this-as"); r.status != 401 {
		t.Fatalf("unknown token: %d %q", r.status, r.body)
	}
	if auds := front.accepted(); len(auds) != 2 || auds[0] != front.url || auds[1] != front.url {
		t.Errorf("assertion auds %q, want 2 × %q", auds, front.url)
	}

	// assertion_audience still overrides the default, and this server then
	// refuses the gateway (503, never the caller's fault) with a hint.
	tc.load(site("\t\t\tassertion_audience " + as.Issuer()))
	r := tc.get("/", "Bearer "+as.Token(t, "svc-a", "read"))
	if r.status != 503 {
		t.Fatalf("with assertion_audience %s: %d %q", as.Issuer(), r.status, r.body)
	}
	if logs := tc.logs(); !strings.Contains(logs, "must be the endpoint invoked") || !strings.Contains(logs, "assertion_audience") {
		t.Errorf("the log does not quote the server and point at assertion_audience:\n%s", logs)
	}
}

// Configs that name only the endpoint an assertion is sent to are valid, in
// a Caddyfile and in JSON: client_secret_jwt and private_key_jwt at the
// introspection endpoint, and private_key_jwt at the token endpoint for the
// gateway's own token.
func TestAssertionConfigsWithOnlyAnEndpointAreValid(t *testing.T) {
	t.Parallel()
	_, keyFile := gatewayKey(t)
	// Parsed as written: no audience or issuer is filled in.
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`bearer_auth {
		introspect {
			endpoint https://as.example.com/oauth2/v1/introspect
			client_id gw
			auth_method private_key_jwt
			private_key /etc/caddy/gw.pem gw-1
		}
	}`)); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h)
	want := `{"introspect":{"endpoint":"https://as.example.com/oauth2/v1/introspect","client_id":"gw","auth_method":"private_key_jwt","private_key":"/etc/caddy/gw.pem","private_key_id":"gw-1"}}`
	if string(got) != want {
		t.Errorf("parsed\n got  %s\n want %s", got, want)
	}

	for _, block := range []string{
		`introspect {
			endpoint https://as.example.com/oauth2/v1/introspect
			client_id gw
			auth_method private_key_jwt
			private_key ` + keyFile + ` gw-1
		}`,
		`introspect {
			endpoint https://as.example.com/oauth2/v1/introspect
			client_id gw
			client_secret s
			auth_method client_secret_jwt
		}`,
		`introspect {
			endpoint https://as.example.com/oauth2/v1/introspect
			client_id gw
			auth_method bearer
			token_endpoint https://as.example.com/oauth2/v1/token
			private_key ` + keyFile + `
		}`,
	} {
		cfg, err := adaptCaddyfile(fmt.Sprintf("{\n\tadmin off\n}\n:0 {\n\tbearer_auth {\n\t\t%s\n\t}\n}\n", block))
		if err != nil {
			t.Fatal(err)
		}
		if err := caddyValidate(t, cfg); err != nil {
			t.Errorf("Caddyfile %s: %v", block, err)
		}
	}
	js := fmt.Sprintf(`{"admin":{"disabled":true},"apps":{"http":{"servers":{"s":{"listen":[":0"],"routes":[{"handle":[
		{"handler":"bearer_auth","introspect":{"endpoint":"https://as.example.com/oauth2/v1/introspect","client_id":"gw",
		 "auth_method":"private_key_jwt","private_key":%q}}]}]}}}}}`, keyFile)
	if err := caddyValidate(t, []byte(js)); err != nil {
		t.Errorf("JSON: %v", err)
	}
}

func TestRefusedGatewayCredentialsBackOffInsteadOfHammeringTheAS(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	tc := startCaddy(t, fmt.Sprintf(`	bearer_auth {
		introspect {
			endpoint %s
			client_id gateway
			client_secret wrong-secret
		}
	}
	respond "ok"`, as.IntrospectionURL()))
	for i := 0; i < 40; i++ {
		if r := tc.get("/", fmt.Sprintf("Bearer user-token-%d", i)); r.status != 503 {
			t.Fatalf("request %d: %d (never 401: the caller's token is not at fault)", i, r.status)
		}
	}
	if n := as.IntrospectionCalls(); n > 6 {
		t.Errorf("introspection calls with refused credentials = %d; the gateway must back off", n)
	}
}

func TestClientSecretFromFilePlaceholder(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(testas.GatewaySecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tc := startCaddy(t, fmt.Sprintf(`	bearer_auth {
		issuer %s
		introspect {
			client_id gateway
			client_secret {file.%s}
		}
	}
	respond "ok"`, as.Issuer(), secretFile))
	if r := tc.get("/", "Bearer "+as.Token(t, "svc-a")); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
}
