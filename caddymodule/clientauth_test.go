package caddymodule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/testas"
)

// keyClient registers a gateway client that authenticates with
// private_key_jwt only, and writes its private key as PKCS#8 PEM.
func keyClient(t *testing.T) (testas.Option, string) {
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
	return testas.WithClients(testas.Client{ID: "gw-key", PublicKey: &pk.PublicKey, KeyID: "gw-1", CanIntrospect: true}), path
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
	opt, keyFile := keyClient(t)
	as := testas.Start(t, opt)
	tc := startCaddy(t, keySite(as, keyFile, ""))
	if r := tc.get("/", "Bearer "+as.Token(t, "svc-a", "read")); r.status != 200 || r.body != "ok svc-a" {
		t.Fatalf("got %d %q\n%s", r.status, r.body, tc.logs())
	}
}

func TestRejectedAssertionAudienceIs503WithAnAudienceHint(t *testing.T) {
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
			auth_method client_secret_jwt
		}`, "needs assertion_audience"},
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

func TestRefusedGatewayCredentialsBackOffInsteadOfHammeringTheAS(t *testing.T) {
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
