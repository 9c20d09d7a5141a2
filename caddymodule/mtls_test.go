package caddymodule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tokengate/tokengate/internal/testas"
	"github.com/tokengate/tokengate/introspect"
)

// testCA issues the server's and the clients' certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tokengate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate for name (a DNS name for a server, a
// common name for a client).
func (ca *testCA) issue(t *testing.T, name string, server bool) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.DNSNames = []string{name}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func writePEM(t *testing.T, dir, name string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	kb, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestCertificateBoundTokensNeedTheirClientCertificate: Caddy terminates
// TLS with client_auth on loopback (the site is named localhost: with
// client_auth Caddy requires the SNI to match the Host), and tokens bound
// with cnf.x5t#S256 (RFC 8705 §3) pass only on a connection that presented
// that certificate — in introspection and JWT modes, cached decisions
// included. Unbound tokens pass with any certificate.
func TestCertificateBoundTokensNeedTheirClientCertificate(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey := writePEM(t, dir, "server", ca.issue(t, "localhost", true))
	right, wrong := ca.issue(t, "svc-mtls", false), ca.issue(t, "svc-other", false)

	as := testas.Start(t)
	as.AddClient(testas.Client{ID: "svc-mtls", Secret: "s", Scopes: []string{"read"}, Audience: []string{"svc-jwt"},
		CertThumbprint: introspect.CertThumbprint(right.Leaf.Raw)})
	as.AddClient(testas.Client{ID: "svc-mtls-jwt", Secret: "s", Scopes: []string{"read"}, Audience: []string{"svc-jwt"}, JWTAccessTokens: true,
		CertThumbprint: introspect.CertThumbprint(right.Leaf.Raw)})

	inProcessCaddy.Lock()
	t.Cleanup(func() { _ = caddy.Stop(); inProcessCaddy.Unlock() })
	port, admin := freePort(t), freePort(t)
	cf := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	https_port %d
	default_bind 127.0.0.1
	auto_https disable_redirects
	persist_config off
}
https://localhost:%d {
	tls %s %s {
		client_auth {
			mode require_and_verify
			trust_pool file %s
		}
	}
	route /introspect {
		bearer_auth {
			issuer %s
			introspect {
				client_id %s
				client_secret %s
			}
		}
		respond "ok {http.auth.user.id}"
	}
	route /jwt {
		bearer_auth {
			issuer %s
			audience svc-jwt
			jwt {
				typ JWT
			}
		}
		respond "ok {http.auth.user.id}"
	}
}
`, admin, port, port, srvCert, srvKey, caFile, as.Issuer(), testas.GatewayID, testas.GatewaySecret, as.Issuer())
	cfg, err := adaptCaddyfile(cf)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	clientWith := func(c tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{c}}}}
	}
	get := func(c *http.Client, path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://localhost:%d%s", port, path), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate") + " " + string(b)
	}
	withRight, withWrong := clientWith(right), clientWith(wrong)
	for _, tt := range []struct{ path, bound, unbound string }{
		{"/introspect", as.Token(t, "svc-mtls", "read"), as.Token(t, "svc-a", "read")},
		{"/jwt", as.Token(t, "svc-mtls-jwt", "read"), as.Token(t, "svc-jwt", "read")},
	} {
		// Twice each: the second answer comes from the decision cache.
		for range 2 {
			if st, b := get(withRight, tt.path, tt.bound); st != http.StatusOK {
				t.Errorf("%s: bound token with its certificate: %d %s", tt.path, st, b)
			}
			if st, b := get(withWrong, tt.path, tt.bound); st != http.StatusUnauthorized || !strings.Contains(b, `error="invalid_token"`) {
				t.Errorf("%s: bound token with another certificate of the same CA: %d %s, want 401 invalid_token", tt.path, st, b)
			}
			if st, b := get(withWrong, tt.path, tt.unbound); st != http.StatusOK {
				t.Errorf("%s: unbound token with any certificate: %d %s", tt.path, st, b)
			}
		}
	}
}

// inProcessCaddy serialises the tests that run Caddy in this process (one
// running config per process); every other test has a Caddy child of its
// own.
var inProcessCaddy sync.Mutex
