package asclient

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/tokengate/tokengate/internal/testas"
	"github.com/tokengate/tokengate/introspect/claims"
)

// --- fixtures ---

type caKeySet struct {
	rsa, rsaOther *rsa.PrivateKey
	ec, ecOther   *ecdsa.PrivateKey
	ed            ed25519.PrivateKey
}

var (
	caKeysOnce sync.Once
	caKeysVal  caKeySet
)

// caKeys are generated once per test binary (RSA generation is slow).
func caKeys(t testing.TB) caKeySet {
	t.Helper()
	caKeysOnce.Do(func() {
		var k caKeySet
		var err error
		for _, p := range []**rsa.PrivateKey{&k.rsa, &k.rsaOther} {
			if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		}
		for _, p := range []**ecdsa.PrivateKey{&k.ec, &k.ecOther} {
			if *p, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
				panic(err)
			}
		}
		if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		caKeysVal = k
	})
	return caKeysVal
}

func caPEM(t testing.TB, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func caPKCS8(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return caPEM(t, "PRIVATE KEY", der)
}

func caWrite(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func caJWKJSON(t testing.TB, raw any, set map[string]any) []byte {
	t.Helper()
	k, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range set {
		if err := k.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// caThumbprint is RFC 7638 computed by hand (not by jwx): SHA-256 over the
// required public members in lexicographic order, no whitespace.
func caThumbprint(t testing.TB, pub any) string {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	var s string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		s = `{"e":"` + b64(big.NewInt(int64(k.E)).Bytes()) + `","kty":"RSA","n":"` + b64(k.N.Bytes()) + `"}`
	case *ecdsa.PublicKey:
		// Uncompressed point: 0x04 || X || Y (32 bytes each for P-256).
		raw, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		x, y := raw[1:33], raw[33:65]
		s = `{"crv":"P-256","kty":"EC","x":"` + b64(x) + `","y":"` + b64(y) + `"}`
	case ed25519.PublicKey:
		s = `{"crv":"Ed25519","kty":"OKP","x":"` + b64(k) + `"}`
	default:
		t.Fatalf("thumbprint of %T", pub)
	}
	sum := sha256.Sum256([]byte(s))
	return b64(sum[:])
}

// Keys exactly as openssl 3.0 writes them (genrsa -traditional 2048;
// ecparam -name prime256v1 -genkey; genpkey -algorithm ed25519). Test-only:
// they protect nothing. Fixed keys also keep the fuzz target's setup cheap:
// RSA key generation under coverage instrumentation takes minutes.
const (
	opensslRSAPKCS1 = `-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAyUHjLn8LMDN3K4oCvpWlYtDUpBKXDaaFsptIIJpa02KjgRr2
ejTe3a0isVi849yoOfZTykr7/OoOB2MIe9JgXqmkPkfUj43vOd4M14eZ70XzlEi0
VOIaNc86aZUuUDgjcWzm3mXRnVQUbmoiheG3zvlqgsAutkwjXEIbjo/TNYFP+EFw
Tt4Krmu/xQszqaFHnwQjBvwpbF/2eaXfp/UNJfkm+Gp2NmGtr+9BHkXRILNt4hS0
Ye28wjWSljgxJwVk8/xIy709ajqZIgkc3rUZXBQAUEbsjV/SLRS/U18m4ELGR2ym
K4Pw9GhxtzvRs8jrFfWXFllYHC0ifid2XQPtJwIDAQABAoIBAAM8mgi/ZlCqIzqC
B7VE9tn1/dV9rww7J19N/AT6Noe7yGFlK52fiA4MoMg1YyRPAi2cdpCEUDUrFnqr
7xD+uyoKlGekBBki8Tv/BDnbJnCgsWArIytST5WZ9ZiJG6uSm49Rbw0Ymhxro8B6
2H9KuAgOHtZnfNjVtKPhNExAp+buXCfvkp1nVZe8fadey1qIzf3DT0yuiiUQxzCc
eeVpOSjBAipQNj/SymlbojVjJCiBJIBNBGm2UlkF1H8g3ZgA/Or6rQAjPgPoGvox
7aBk62rPT7FtDxCzdpUw7KBWznn95USdnrqWZaiuvzRWgQAjxf3KJAFniQcY2UHg
blEJIFECgYEA8hb5stXGRb/RfTzG4xGtvlM41I8GwiR03f7akcb0+aTRlT2Cu4dL
uZuJZ41+xMUNrIO2gfFFqIwNK4qKbJAEM2sYenkIpqc2b1BWqfsXURrptGr3hzJw
CcwiAAkkFCY2i+lobbr6sF7oSXXFrePcZClyjTrqOIOdZ0GYY7B702MCgYEA1NJJ
jKi140aBokMtyyuWJB5NPALtbi12cvseP1VQFukRfIVhCOJTGmtW5XY322Glgtb0
nKVtSVHNrjiGPsrXMYruf25V07CHGyxQ2keNT9mFA1ZPwyq3m4dxk7/sqpQRQ/Vc
TcNUPmDwZa9Q5Xo9nljOYeRKGZz2oNQxwip7JG0CgYEA58a5b8+d0X+RuL6siA+P
8Y1J9q+sv8kZnsT2S+VY+34iLilC9fnVtTFFf0AH46npqoY8APKXR4Q2w74TQ1cq
vnPFbtRcRPoIctBO+NTuAPesUtCqheTzQV4QG0qlISloxdFE6vG+O4fSCyrXhOGI
Stkn1DFYt5zC4W360U7RbpMCgYAl9iScbHOVSLxS3zzJ4spzQtxv+e20G3Pnapeo
oGUa0RQHbBs05HoCWmczovSvsyk8v27+ihuGWosfqoF3reLYuXl1TY8NpY1T8YGy
jdTNC3XIdJrhqzr5CR3fRvrGKocx4hBG5rKeNdhrquv5Iube2eRmXbxB+VectHzz
r3QruQKBgFFeRGvkmO2sn3cmYbTozyYgnKAu8c2ht23naCTeNODCzUbF0OAdacuC
Bk3MTVB+0+D4sS2wcNd5d6pVmgQmx2RN4OLqLLIuAK8kiXW8vwNPYS2Nvqrdtie0
F7rv4xkM9X7sTCKuFD/HnepYbfiG4JOA+cYS5gXdCYDq5w+n/XKk
-----END RSA PRIVATE KEY-----
`
	opensslECWithParams = `-----BEGIN EC PARAMETERS-----
BggqhkjOPQMBBw==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIBjGnfpASQ7/h73GNRyMmzMwFPPLNXrA3mGczwOG4fhxoAoGCCqGSM49
AwEHoUQDQgAE9dM4s+O1DaTfNu0MEfayQVqQHorgmZW+aaTfL3hD71b/Xk6LtSSa
YcHBVVsWZuA/4JAbjKUdw0gQb5tk5LD2uw==
-----END EC PRIVATE KEY-----
`
	opensslEd25519PKCS8 = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIOd65lu6nO/AHkVH+fdKVNWluPH+LCrgMIJ5FvlAfXuR
-----END PRIVATE KEY-----
`
)

// --- LoadPrivateKey / ParsePrivateKey ---

func TestLoadPrivateKeyFormats(t *testing.T) {
	k := caKeys(t)
	rsaPKCS1 := caPEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa))
	ecDER, err := x509.MarshalECPrivateKey(k.ec)
	if err != nil {
		t.Fatal(err)
	}
	// What `openssl ecparam -name prime256v1 -genkey` writes: a parameters
	// block, then the SEC1 key.
	ecSEC1 := append(caPEM(t, "EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), caPEM(t, "EC PRIVATE KEY", ecDER)...)
	twoKeySet := []byte(`{"keys":[` + string(caJWKJSON(t, k.ec, map[string]any{"kid": "ec-1"})) + `,` +
		string(caJWKJSON(t, k.rsa, map[string]any{"kid": "rsa-1"})) + `]}`)

	tests := []struct {
		name      string
		data      []byte
		kid       string
		wantAlg   jwa.SignatureAlgorithm
		wantKid   string
		wantClass string // rsa, ec, ed
	}{
		{"rsa pkcs8, thumbprint kid", caPKCS8(t, k.rsa), "", jwa.RS256, caThumbprint(t, &k.rsa.PublicKey), "rsa"},
		{"rsa pkcs1, configured kid", rsaPKCS1, "gw-2025", jwa.RS256, "gw-2025", "rsa"},
		{"ec sec1 with parameters block", ecSEC1, "", jwa.ES256, caThumbprint(t, &k.ec.PublicKey), "ec"},
		{"ec pkcs8", caPKCS8(t, k.ec), "k-ec", jwa.ES256, "k-ec", "ec"},
		{"ed25519 pkcs8", caPKCS8(t, k.ed), "", jwa.EdDSA, caThumbprint(t, k.ed.Public()), "ed"},
		{"rsa jwk without kid/alg", caJWKJSON(t, k.rsa, nil), "", jwa.RS256, caThumbprint(t, &k.rsa.PublicKey), "rsa"},
		{"rsa jwk with own alg PS256", caJWKJSON(t, k.rsa, map[string]any{"alg": "PS256"}), "", jwa.PS256, caThumbprint(t, &k.rsa.PublicKey), "rsa"},
		{"jwk's own kid wins over configured", caJWKJSON(t, k.ec, map[string]any{"kid": "own", "alg": "ES256"}), "configured", jwa.ES256, "own", "ec"},
		{"jwk configured kid when none of its own", caJWKJSON(t, k.ed, nil), "configured", jwa.EdDSA, "configured", "ed"},
		{"jwk set of one", []byte(`{"keys":[` + string(caJWKJSON(t, k.ed, map[string]any{"kid": "only"})) + `]}`), "", jwa.EdDSA, "only", "ed"},
		{"jwk set, kid selects", twoKeySet, "rsa-1", jwa.RS256, "rsa-1", "rsa"},
		{"surrounding whitespace", append(append([]byte("\n\n  "), caPKCS8(t, k.ec)...), "\n\n"...), "", jwa.ES256, caThumbprint(t, &k.ec.PublicKey), "ec"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, err := LoadPrivateKey(caWrite(t, "key", tc.data), tc.kid)
			if err != nil {
				t.Fatal(err)
			}
			if got := key.Algorithm().String(); got != string(tc.wantAlg) {
				t.Errorf("alg = %q, want %q", got, tc.wantAlg)
			}
			if got := key.KeyID(); got != tc.wantKid {
				t.Errorf("kid = %q, want %q", got, tc.wantKid)
			}
			var ok bool
			switch tc.wantClass {
			case "rsa":
				_, ok = key.(jwk.RSAPrivateKey)
			case "ec":
				_, ok = key.(jwk.ECDSAPrivateKey)
			case "ed":
				_, ok = key.(jwk.OKPPrivateKey)
			}
			if !ok {
				t.Errorf("key is %T, want a %s private key", key, tc.wantClass)
			}
			// The loaded key signs what its public half verifies.
			a := PrivateKeyJWT{ClientID: "gw", Key: key, Audience: "https://as"}
			form := url.Values{}
			if err := a.Authenticate(context.Background(), "https://as/introspect", form, http.Header{}); err != nil {
				t.Fatal(err)
			}
			pub, err := key.PublicKey()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jws.Verify([]byte(form.Get("client_assertion")), jws.WithKey(tc.wantAlg, pub)); err != nil {
				t.Errorf("assertion does not verify with the public key: %v", err)
			}
		})
	}
}

func TestLoadPrivateKeyOpenSSLOutput(t *testing.T) {
	for _, tc := range []struct {
		name, pem string
		alg       jwa.SignatureAlgorithm
	}{
		{"genrsa -traditional", opensslRSAPKCS1, jwa.RS256},
		{"ecparam -genkey (parameters block first)", opensslECWithParams, jwa.ES256},
		{"genpkey ed25519", opensslEd25519PKCS8, jwa.EdDSA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := LoadPrivateKey(caWrite(t, "key.pem", []byte(tc.pem)), "")
			if err != nil {
				t.Fatal(err)
			}
			if key.Algorithm().String() != string(tc.alg) {
				t.Errorf("alg %q, want %q", key.Algorithm(), tc.alg)
			}
			pub, err := key.PublicKey()
			if err != nil {
				t.Fatal(err)
			}
			var raw any
			if err := pub.Raw(&raw); err != nil {
				t.Fatal(err)
			}
			if want := caThumbprint(t, raw); key.KeyID() != want {
				t.Errorf("kid %q, want the RFC 7638 thumbprint %q", key.KeyID(), want)
			}
		})
	}
}

func TestLoadPrivateKeyRejects(t *testing.T) {
	k := caKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gw"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.ec.PublicKey, k.ec)
	if err != nil {
		t.Fatal(err)
	}
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1, 2, 3}})
	pubJWK := caJWKJSON(t, &k.ec.PublicKey, map[string]any{"use": "sig"})
	twoKeySet := []byte(`{"keys":[` + string(caJWKJSON(t, k.ec, map[string]any{"kid": "a"})) + `,` + string(caJWKJSON(t, k.ecOther, map[string]any{"kid": "b"})) + `]}`)
	mismatch := caJWKJSON(t, k.ec, nil)
	var m map[string]any
	_ = json.Unmarshal(mismatch, &m)
	m["d"] = base64.RawURLEncoding.EncodeToString(caECPrivateScalar(t, k.ecOther))
	mismatch, _ = json.Marshal(m)

	tests := []struct {
		name, data, kid, want string
	}{
		{"empty", "", "", "neither PEM nor JWK"},
		{"garbage", "hello", "", "neither PEM nor JWK"},
		{"public key pem", string(caPEM(t, "PUBLIC KEY", pubDER)), "", "only a public key"},
		{"certificate", string(caPEM(t, "CERTIFICATE", certDER)), "", "only a public key or certificate"},
		{"encrypted pem", string(encrypted), "", "encrypted"},
		{"encrypted pkcs8", string(caPEM(t, "ENCRYPTED PRIVATE KEY", []byte{1})), "", "encrypted"},
		{"openssh", string(caPEM(t, "OPENSSH PRIVATE KEY", []byte{1})), "", "OpenSSH"},
		{"two private keys", string(caPKCS8(t, k.ec)) + string(caPKCS8(t, k.ed)), "", "more than one private key"},
		{"rsa 1024", string(caPKCS8(t, small)), "", "1024 bits"},
		{"ec p-224", string(caPKCS8(t, p224)), "", ""},
		{"x25519", string(caPKCS8(t, x25519)), "", "X25519"},
		{"broken der", string(caPEM(t, "PRIVATE KEY", []byte{0x30, 0x03, 1, 2, 3})), "", "parsing"},
		{"public jwk", string(pubJWK), "", "public key"},
		{"oct jwk", `{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}`, "", "client_secret_jwt"},
		{"alg does not fit key", string(caJWKJSON(t, k.ec, map[string]any{"alg": "ES384"})), "", "does not fit"},
		{"HS alg on rsa key", string(caJWKJSON(t, k.rsa, map[string]any{"alg": "HS256"})), "", "does not fit"},
		{"use enc", string(caJWKJSON(t, k.rsa, map[string]any{"use": "enc"})), "", "not sig"},
		{"set needs kid", string(twoKeySet), "", "name one"},
		{"set unknown kid", string(twoKeySet), "c", `no key with kid "c"`},
		{"empty set", `{"keys":[]}`, "", "empty"},
		{"d does not match x/y", string(mismatch), "", "does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePrivateKey([]byte(tc.data), tc.kid)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			t.Log(err)
		})
	}
	if _, err := LoadPrivateKey(filepath.Join(t.TempDir(), "missing.pem"), ""); err == nil {
		t.Error("missing file accepted")
	}
	big := bytes.Repeat([]byte{' '}, maxPrivateKeyBytes+10)
	if _, err := LoadPrivateKey(caWrite(t, "big", big), ""); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("oversized file: %v", err)
	}
}

// RFC 7638 §3.1's own example: the thumbprint of that RSA key.
func TestPrivateKeyIDThumbprintRFC7638Vector(t *testing.T) {
	const example = `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	k, err := jwk.ParseKey([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Remove(jwk.KeyIDKey)
	got, err := privateKeyID(k, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("thumbprint = %q, want %q", got, want)
	}
}

func TestParsePrivateKeyDoesNotModifyCallerKey(t *testing.T) {
	k := caKeys(t)
	raw, err := jwk.FromRaw(k.ec)
	if err != nil {
		t.Fatal(err)
	}
	a := PrivateKeyJWT{ClientID: "gw", Key: raw, Audience: "aud"}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if raw.KeyID() != "" || raw.Algorithm().String() != "" {
		t.Errorf("Validate modified the caller's key: kid %q alg %q", raw.KeyID(), raw.Algorithm())
	}
}

// --- assertion contents, claim by claim ---

// caCapture is an introspection endpoint that records what it is sent and
// answers active:false.
type caCapture struct {
	mu      sync.Mutex
	forms   []url.Values
	headers []http.Header
	srv     *httptest.Server
}

func newCACapture(t testing.TB) *caCapture {
	c := &caCapture{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		c.mu.Lock()
		c.forms = append(c.forms, r.PostForm)
		c.headers = append(c.headers, r.Header.Clone())
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"active":false}`))
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *caCapture) last() (url.Values, http.Header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.forms[len(c.forms)-1], c.headers[len(c.headers)-1]
}

// caDecodeSegment decodes a JWT segment keeping numbers as json.Number, so
// that a string "exp" or a fractional "iat" shows.
func caDecodeSegment(t testing.TB, seg string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("segment is not base64url: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func caInteger(t testing.TB, m map[string]any, name string) int64 {
	t.Helper()
	n, ok := m[name].(json.Number)
	if !ok {
		t.Fatalf("%s is %T (%v), want a JSON number", name, m[name], m[name])
	}
	if strings.ContainsAny(n.String(), ".eE") {
		t.Fatalf("%s = %s, want an integer number of seconds", name, n)
	}
	v, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestClientAssertionContents(t *testing.T) {
	k := caKeys(t)
	now := time.Date(2025, 6, 1, 12, 0, 0, 700_000_000, time.UTC) // fractional second
	clock := func() time.Time { return now }
	const aud = "https://as.example.com"

	rsaKey, err := ParsePrivateKey(caPKCS8(t, k.rsa), "rsa-kid")
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ParsePrivateKey(caPKCS8(t, k.ec), "")
	if err != nil {
		t.Fatal(err)
	}
	edKey, err := ParsePrivateKey(caJWKJSON(t, k.ed, map[string]any{"kid": "ed-own"}), "ignored")
	if err != nil {
		t.Fatal(err)
	}
	verifyWith := func(alg jwa.SignatureAlgorithm, key any) func(string) error {
		return func(a string) error { _, err := jws.Verify([]byte(a), jws.WithKey(alg, key)); return err }
	}

	tests := []struct {
		name     string
		auth     ClientAuthenticator
		alg      string
		kid      string // "" = no kid header
		lifetime int64
		verify   func(string) error
	}{
		{"client_secret_jwt HS256 default", ClientSecretJWT{ClientID: "gw", Secret: "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t", Audience: aud, Now: clock}, "HS256", "", 120,
			verifyWith(jwa.HS256, []byte("s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"))},
		{"client_secret_jwt HS384", ClientSecretJWT{ClientID: "gw", Secret: "x", Alg: jwa.HS384, Audience: aud, Lifetime: 5 * time.Minute, Now: clock}, "HS384", "", 300,
			verifyWith(jwa.HS384, []byte("x"))},
		{"client_secret_jwt HS512", ClientSecretJWT{ClientID: "gw", Secret: "x", Alg: jwa.HS512, Audience: aud, Lifetime: time.Hour, Now: clock}, "HS512", "", 3600,
			verifyWith(jwa.HS512, []byte("x"))},
		{"private_key_jwt RS256 configured kid", PrivateKeyJWT{ClientID: "gw", Key: rsaKey, Audience: aud, Now: clock}, "RS256", "rsa-kid", 120,
			verifyWith(jwa.RS256, &k.rsa.PublicKey)},
		{"private_key_jwt ES256 thumbprint kid", PrivateKeyJWT{ClientID: "gw", Key: ecKey, Audience: aud, Lifetime: 10 * time.Minute, Now: clock}, "ES256", caThumbprint(t, &k.ec.PublicKey), 600,
			verifyWith(jwa.ES256, &k.ec.PublicKey)},
		{"private_key_jwt EdDSA own kid", PrivateKeyJWT{ClientID: "gw", Key: edKey, Audience: aud, Now: clock}, "EdDSA", "ed-own", 120,
			verifyWith(jwa.EdDSA, k.ed.Public())},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cap := newCACapture(t)
			in := &Introspector{Endpoint: cap.srv.URL, Auth: tc.auth}
			seen := map[string]bool{}
			for i := 0; i < 100; i++ {
				if _, err := in.Introspect(context.Background(), "opaque-token"); !errors.Is(err, claims.ErrInvalidToken) {
					t.Fatalf("want inactive, got %v", err)
				}
				form, header := cap.last()
				a := form.Get("client_assertion")
				if seen[a] {
					t.Fatal("an assertion was reused")
				}
				seen[a] = true
				if i > 0 {
					continue // the claim-by-claim checks once; jti below for all
				}

				// Form: exactly these parameters, all lower case, the
				// assertion type spelled exactly, no secret, no Basic.
				var names []string
				for n := range form {
					names = append(names, n)
					if n != strings.ToLower(n) {
						t.Errorf("parameter %q is not lower case", n)
					}
					if len(form[n]) != 1 {
						t.Errorf("parameter %q sent %d times", n, len(form[n]))
					}
				}
				slices.Sort(names)
				if want := []string{"client_assertion", "client_assertion_type", "client_id", "token", "token_type_hint"}; !slices.Equal(names, want) {
					t.Errorf("form parameters %v, want %v", names, want)
				}
				if got := form.Get("client_assertion_type"); got != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
					t.Errorf("client_assertion_type = %q", got)
				}
				if form.Get("client_id") != "gw" {
					t.Errorf("client_id = %q", form.Get("client_id"))
				}
				if h := header.Get("Authorization"); h != "" {
					t.Errorf("Authorization header sent too: %q", h)
				}

				parts := strings.Split(a, ".")
				if len(parts) != 3 {
					t.Fatalf("assertion has %d segments", len(parts))
				}
				hdr := caDecodeSegment(t, parts[0])
				if hdr["alg"] != tc.alg {
					t.Errorf("header alg = %v, want %s", hdr["alg"], tc.alg)
				}
				if hdr["typ"] != "JWT" {
					t.Errorf("header typ = %v", hdr["typ"])
				}
				if tc.kid == "" {
					if _, ok := hdr["kid"]; ok {
						t.Errorf("client_secret_jwt sent a kid: %v", hdr["kid"])
					}
				} else if hdr["kid"] != tc.kid {
					t.Errorf("header kid = %v, want %s", hdr["kid"], tc.kid)
				}
				claims := caDecodeSegment(t, parts[1])
				if claims["iss"] != "gw" || claims["sub"] != "gw" {
					t.Errorf("iss/sub = %v/%v, want the client_id", claims["iss"], claims["sub"])
				}
				if claims["aud"] != aud {
					t.Errorf("aud = %#v, want the string %q", claims["aud"], aud)
				}
				iat, exp := caInteger(t, claims, "iat"), caInteger(t, claims, "exp")
				if iat != now.Unix() {
					t.Errorf("iat = %d, want %d (now, rounded down)", iat, now.Unix())
				}
				if exp-iat != tc.lifetime || exp-iat <= 0 || exp-iat > int64(MaxAssertionLifetime/time.Second) {
					t.Errorf("exp - iat = %d, want %d (and within %v)", exp-iat, tc.lifetime, MaxAssertionLifetime)
				}
				if jti, _ := claims["jti"].(string); len(jti) < 22 {
					t.Errorf("jti %q is shorter than 128 bits", jti)
				}
				if err := tc.verify(a); err != nil {
					t.Errorf("signature does not verify: %v", err)
				}
			}
			// jti unique across the 100 calls.
			jtis := map[string]bool{}
			cap.mu.Lock()
			for _, f := range cap.forms {
				parts := strings.Split(f.Get("client_assertion"), ".")
				jti, _ := caDecodeSegment(t, parts[1])["jti"].(string)
				if jtis[jti] {
					t.Errorf("jti %q repeated", jti)
				}
				jtis[jti] = true
			}
			n := len(cap.forms)
			cap.mu.Unlock()
			if n != 100 || len(jtis) != 100 {
				t.Errorf("%d calls, %d distinct jti; want 100", n, len(jtis))
			}
		})
	}
}

func TestClientAssertionValidation(t *testing.T) {
	k := caKeys(t)
	key, err := ParsePrivateKey(caPKCS8(t, k.ec), "")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := jwk.FromRaw(&k.ec.PublicKey)
	tests := []struct {
		name string
		auth interface {
			ClientAuthenticator
			Validate() error
		}
		want string
	}{
		{"lifetime over an hour", ClientSecretJWT{ClientID: "gw", Secret: "s", Audience: "a", Lifetime: 2 * time.Hour}, "longer than 1h0m0s"},
		{"lifetime 24h (Oath's server's limit)", PrivateKeyJWT{ClientID: "gw", Key: key, Audience: "a", Lifetime: 24 * time.Hour}, "longer than"},
		{"negative lifetime", PrivateKeyJWT{ClientID: "gw", Key: key, Audience: "a", Lifetime: -time.Minute}, "negative"},
		{"sub-second lifetime", PrivateKeyJWT{ClientID: "gw", Key: key, Audience: "a", Lifetime: time.Millisecond}, "shorter than a second"},
		{"no client id", ClientSecretJWT{Secret: "s", Audience: "a"}, "client_id"},
		{"no secret", ClientSecretJWT{ClientID: "gw", Audience: "a"}, "client_secret"},
		{"alg none", ClientSecretJWT{ClientID: "gw", Secret: "s", Audience: "a", Alg: jwa.NoSignature}, "not HS256"},
		{"alg RS256 for a secret", ClientSecretJWT{ClientID: "gw", Secret: "s", Audience: "a", Alg: jwa.RS256}, "not HS256"},
		{"no key", PrivateKeyJWT{ClientID: "gw", Audience: "a"}, "private_key is required"},
		{"public key", PrivateKeyJWT{ClientID: "gw", Key: pub, Audience: "a"}, "public key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.auth.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error mentioning %q", err, tc.want)
			}
			form := url.Values{}
			if err := tc.auth.Authenticate(context.Background(), "https://as/introspect", form, http.Header{}); err == nil {
				t.Fatal("Authenticate signed an assertion for an invalid configuration")
			}
			if len(form) != 0 {
				t.Errorf("form modified: %v", form)
			}
		})
	}
	ok := []interface{ Validate() error }{
		ClientSecretJWT{ClientID: "gw", Secret: "s", Audience: "a", Lifetime: time.Hour},
		PrivateKeyJWT{ClientID: "gw", Key: key, Audience: "a"},
		// No audience and no issuer is valid: the aud is then the URL of
		// the endpoint each assertion is sent to.
		ClientSecretJWT{ClientID: "gw", Secret: "s"},
		PrivateKeyJWT{ClientID: "gw", Key: key},
	}
	for _, a := range ok {
		if err := a.Validate(); err != nil {
			t.Errorf("%T: %v", a, err)
		}
	}
	// Only a call to no endpoint at all leaves nothing to name.
	for _, a := range []ClientAuthenticator{ClientSecretJWT{ClientID: "gw", Secret: "s"}, PrivateKeyJWT{ClientID: "gw", Key: key}} {
		form := url.Values{}
		if err := a.Authenticate(context.Background(), "", form, http.Header{}); err == nil || !strings.Contains(err.Error(), "no audience") {
			t.Errorf("%s to no endpoint: %v, want a no-audience error", a.Method(), err)
		}
		if len(form) != 0 {
			t.Errorf("form modified: %v", form)
		}
	}
}

// caAssertionAud is the aud claim of the client assertion in form.
func caAssertionAud(t testing.TB, form url.Values) any {
	t.Helper()
	parts := strings.Split(form.Get("client_assertion"), ".")
	if len(parts) != 3 {
		t.Fatalf("no client assertion in %v", form)
	}
	return caDecodeSegment(t, parts[1])["aud"]
}

// Issue 10 item 10: the aud of a client assertion is assertion_audience if
// set, else the issuer, else the URL of the endpoint the assertion is sent
// to (what oidc-provider, Okta and RFC 7523 §3 accept), so that a config
// with only an endpoint works.
func TestAssertionAudienceDefaultsToIssuerElseEndpoint(t *testing.T) {
	key, err := ParsePrivateKey(caPKCS8(t, caKeys(t).ec), "gw-1")
	if err != nil {
		t.Fatal(err)
	}
	cap := newCACapture(t)
	endpoint := cap.srv.URL + "/oauth2/v1/introspect"
	const issuer, configured = "https://as.example.com", "https://as.example.com/realms/api"
	const secret = "client-secret-of-at-least-32-bytes!"
	for _, tc := range []struct {
		name         string
		auth         ClientAuthenticator
		want, source string
	}{
		{"private_key_jwt, endpoint only", PrivateKeyJWT{ClientID: "gw", Key: key}, endpoint, AssertionAudEndpoint},
		{"private_key_jwt, issuer", PrivateKeyJWT{ClientID: "gw", Key: key, Issuer: issuer}, issuer, AssertionAudIssuer},
		{"private_key_jwt, assertion_audience", PrivateKeyJWT{ClientID: "gw", Key: key, Issuer: issuer, Audience: configured}, configured, AssertionAudConfigured},
		{"client_secret_jwt, endpoint only", ClientSecretJWT{ClientID: "gw", Secret: secret}, endpoint, AssertionAudEndpoint},
		{"client_secret_jwt, issuer", ClientSecretJWT{ClientID: "gw", Secret: secret, Issuer: issuer}, issuer, AssertionAudIssuer},
		{"client_secret_jwt, assertion_audience", ClientSecretJWT{ClientID: "gw", Secret: secret, Audience: configured}, configured, AssertionAudConfigured},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &Introspector{Endpoint: endpoint, Auth: tc.auth}
			if _, err := in.Introspect(context.Background(), "opaque-token"); !errors.Is(err, claims.ErrInvalidToken) {
				t.Fatalf("want the server's active:false, got %v", err)
			}
			form, _ := cap.last()
			if aud := caAssertionAud(t, form); aud != tc.want {
				t.Errorf("aud = %#v, want the string %q", aud, tc.want)
			}
			// What the doctor shows is what was signed.
			at, ok := AssertionTargetOf(tc.auth, endpoint)
			if want := (AssertionTarget{Endpoint: endpoint, Audience: tc.want, Source: tc.source}); !ok || at != want {
				t.Errorf("AssertionTargetOf = %+v, %v; want %+v", at, ok, want)
			}
		})
	}
	if _, ok := AssertionTargetOf(SecretBasic{ClientID: "gw", ClientSecret: "s"}, endpoint); ok {
		t.Error("client_secret_basic reported an assertion audience")
	}
}

// One authenticator, two endpoints: with no issuer, the assertion of the
// gateway's own token request (auth_method bearer) names the token endpoint,
// and one sent to the introspection endpoint names that.
func TestAssertionAudienceFollowsTheEndpointOfEachCall(t *testing.T) {
	key, err := ParsePrivateKey(caPKCS8(t, caKeys(t).ec), "gw-1")
	if err != nil {
		t.Fatal(err)
	}
	auth := PrivateKeyJWT{ClientID: "gw", Key: key}
	ts := newCATokenServer(t)
	tokenURL := ts.srv.URL + "/oauth2/v1/token"
	cap := newCACapture(t)
	introspectURL := cap.srv.URL + "/oauth2/v1/introspect"

	direct := &Introspector{Endpoint: introspectURL, Auth: auth}
	if _, err := direct.Introspect(context.Background(), "opaque-token"); !errors.Is(err, claims.ErrInvalidToken) {
		t.Fatalf("want active:false, got %v", err)
	}
	form, _ := cap.last()
	if aud := caAssertionAud(t, form); aud != introspectURL {
		t.Errorf("introspection call: aud = %#v, want %q", aud, introspectURL)
	}

	bearer := &BearerAuth{TokenEndpoint: tokenURL, ClientAuth: auth, Scopes: []string{"introspect"}}
	if err := bearer.Validate(); err != nil {
		t.Fatal(err)
	}
	viaToken := &Introspector{Endpoint: introspectURL, Auth: bearer}
	if _, err := viaToken.Introspect(context.Background(), "opaque-token"); !errors.Is(err, claims.ErrInvalidToken) {
		t.Fatalf("want active:false, got %v", err)
	}
	ts.mu.Lock()
	tokenForms := slices.Clone(ts.forms)
	ts.mu.Unlock()
	if len(tokenForms) != 1 {
		t.Fatalf("%d token requests, want 1", len(tokenForms))
	}
	if aud := caAssertionAud(t, tokenForms[0]); aud != tokenURL {
		t.Errorf("token request: aud = %#v, want the token endpoint %q", aud, tokenURL)
	}
	form, header := cap.last()
	if form.Has("client_assertion") || header.Get("Authorization") != "Bearer tok-1" {
		t.Errorf("introspection with the gateway's token sent %v, Authorization %q", form, header.Get("Authorization"))
	}
	at, ok := AssertionTargetOf(bearer, introspectURL)
	if want := (AssertionTarget{Endpoint: tokenURL, Audience: tokenURL, Source: AssertionAudEndpoint}); !ok || at != want {
		t.Errorf("AssertionTargetOf(bearer) = %+v, %v; want %+v", at, ok, want)
	}
}

// --- against the real authorization server ---

// caIntrospectError introspects and returns the *claims.Error and the *ASError in it.
func caIntrospectError(t *testing.T, in *Introspector, tok string) (*claims.Error, *ASError) {
	t.Helper()
	d, err := in.Introspect(context.Background(), tok)
	if err == nil {
		t.Fatalf("introspection succeeded: %+v", d)
	}
	var e *claims.Error
	if !errors.As(err, &e) || e.Code != claims.CodeUnavailable {
		t.Fatalf("want a temporarily_unavailable *claims.Error (never the caller's fault), got %v", err)
	}
	var ase *ASError
	if !errors.As(err, &ase) {
		t.Fatalf("no *ASError in %v", err)
	}
	t.Logf("AS said: %v\n    hint: %s", ase, ase.Hint())
	return e, ase
}

func TestPrivateKeyJWTAtRealAS(t *testing.T) {
	k := caKeys(t)
	edPub := k.ed.Public()
	s := testas.Start(t, testas.WithClients(
		testas.Client{ID: "gw-rsa", PublicKey: &k.rsa.PublicKey, KeyID: "rsa-2025", CanIntrospect: true},
		// Registered under the key's RFC 7638 thumbprint: the gateway sends
		// it when no kid is configured.
		testas.Client{ID: "gw-ec", PublicKey: &k.ec.PublicKey, KeyID: caThumbprint(t, &k.ec.PublicKey), CanIntrospect: true},
		testas.Client{ID: "gw-ed", PublicKey: edPub, CanIntrospect: true},
	))
	tok := s.Token(t, "svc-a", "read", "write")

	rsaKey, err := LoadPrivateKey(caWrite(t, "rsa.pem", caPEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa))), "rsa-2025")
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := LoadPrivateKey(caWrite(t, "ec.jwk", caJWKJSON(t, k.ec, nil)), "")
	if err != nil {
		t.Fatal(err)
	}
	edKey, err := LoadPrivateKey(caWrite(t, "ed.pem", caPKCS8(t, k.ed)), "")
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := ParsePrivateKey(caPKCS8(t, k.rsaOther), "rsa-2025")
	if err != nil {
		t.Fatal(err)
	}
	wrongKid, err := ParsePrivateKey(caPKCS8(t, k.rsa), "rsa-2024")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		auth PrivateKeyJWT
	}{
		{"RS256 PKCS#1 PEM, configured kid", PrivateKeyJWT{ClientID: "gw-rsa", Key: rsaKey, Audience: s.Issuer()}},
		{"ES256 JWK, thumbprint kid", PrivateKeyJWT{ClientID: "gw-ec", Key: ecKey, Audience: s.Issuer(), Lifetime: 5 * time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &Introspector{Endpoint: s.IntrospectionURL(), Auth: tc.auth}
			for i := 0; i < 3; i++ { // a fresh assertion each time
				d, err := in.Introspect(context.Background(), tok)
				if err != nil {
					t.Fatal(err)
				}
				if d.ClientID() != "svc-a" || !d.HasScope("read") || !d.HasScope("write") {
					t.Fatalf("decision %+v", d)
				}
			}
		})
	}

	// What this AS (zitadel) refuses, and what the operator is told. The
	// library answers every assertion failure with the same words ("JWT
	// assertion failed"), so the hint names each thing to check.
	refusals := []struct {
		name     string
		auth     PrivateKeyJWT
		mentions []string
	}{
		{"wrong key", PrivateKeyJWT{ClientID: "gw-rsa", Key: otherKey, Audience: s.Issuer()}, []string{"public key", "kid"}},
		{"kid unknown to the server", PrivateKeyJWT{ClientID: "gw-rsa", Key: wrongKid, Audience: s.Issuer()}, []string{"kid"}},
		{"expired assertion (clock behind)", PrivateKeyJWT{ClientID: "gw-rsa", Key: rsaKey, Audience: s.Issuer(),
			Now: func() time.Time { return time.Now().Add(-10 * time.Minute) }}, []string{"clock"}},
		{"iat in the future (clock ahead)", PrivateKeyJWT{ClientID: "gw-rsa", Key: rsaKey, Audience: s.Issuer(),
			Now: func() time.Time { return time.Now().Add(5 * time.Minute) }}, []string{"clock"}},
		{"aud = introspection endpoint URL", PrivateKeyJWT{ClientID: "gw-rsa", Key: rsaKey, Audience: s.IntrospectionURL()}, []string{"assertion_audience", "issuer"}},
		{"EdDSA (this server takes RS256/ES256/PS256 only)", PrivateKeyJWT{ClientID: "gw-ed", Key: edKey, Audience: s.Issuer()}, []string{"alg"}},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			in := &Introspector{Endpoint: s.IntrospectionURL(), Auth: tc.auth}
			_, ase := caIntrospectError(t, in, tok)
			if ase.Status != http.StatusBadRequest || ase.Code != "unauthorized_client" {
				t.Errorf("AS answered %d %s, want 400 unauthorized_client", ase.Status, ase.Code)
			}
			if ase.Endpoint != s.IntrospectionURL() {
				t.Errorf("ASError.Endpoint = %q", ase.Endpoint)
			}
			h := ase.Hint()
			for _, m := range tc.mentions {
				if !strings.Contains(h, m) {
					t.Errorf("hint %q does not mention %q", h, m)
				}
			}
		})
	}
}

func TestClientSecretMethodsAtRealAS(t *testing.T) {
	s := testas.Start(t)
	tok := s.Token(t, "svc-b")
	for _, auth := range []ClientAuthenticator{
		SecretBasic{ClientID: testas.GatewayID, ClientSecret: testas.GatewaySecret},
		SecretPost{ClientID: testas.GatewayID, ClientSecret: testas.GatewaySecret},
	} {
		t.Run(auth.Method(), func(t *testing.T) {
			in := &Introspector{Endpoint: s.IntrospectionURL(), Auth: auth}
			d, err := in.Introspect(context.Background(), tok)
			if err != nil || d.ClientID() != "svc-b" {
				t.Fatalf("%+v %v", d, err)
			}
		})
	}
	for _, auth := range []ClientAuthenticator{
		SecretBasic{ClientID: testas.GatewayID, ClientSecret: "wrong"},
		SecretPost{ClientID: testas.GatewayID, ClientSecret: "wrong"},
	} {
		t.Run(auth.Method()+" wrong secret", func(t *testing.T) {
			in := &Introspector{Endpoint: s.IntrospectionURL(), Auth: auth}
			_, ase := caIntrospectError(t, in, tok)
			if ase.Code != "invalid_client" || !strings.Contains(ase.Hint(), "client_secret") {
				t.Errorf("code %q hint %q", ase.Code, ase.Hint())
			}
		})
	}
}

// caSecretJWTServer fronts the real AS for client_secret_jwt, which the real
// AS (zitadel/oidc) does not implement: it verifies the HMAC assertion as an
// RFC 7523 server would (signature with the client's secret, iss = sub =
// client_id, aud = the issuer, exp in the future, iat not in the future,
// jti not replayed), answering failures with Oath's server's words, and then
// forwards the token to the real AS's introspection endpoint with the
// gateway's real credentials. The introspection answer is the real one.
func caSecretJWTServer(t *testing.T, s *testas.Server, clientID, secret string) *httptest.Server {
	var mu sync.Mutex
	seenJTI := map[string]bool{}
	fail := func(w http.ResponseWriter, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": desc})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if r.PostForm.Get("client_assertion_type") != ClientAssertionTypeJWTBearer {
			fail(w, "Invalid client assertion type")
			return
		}
		a := r.PostForm.Get("client_assertion")
		if _, err := jws.Verify([]byte(a), jws.WithKey(jwa.HS256, []byte(secret))); err != nil {
			fail(w, "Client authentication failed")
			return
		}
		tk, err := jwt.Parse([]byte(a), jwt.WithVerify(false), jwt.WithValidate(true),
			jwt.WithIssuer(clientID), jwt.WithSubject(clientID), jwt.WithAudience(s.Issuer()),
			jwt.WithRequiredClaim("iat"), jwt.WithRequiredClaim("exp"), jwt.WithRequiredClaim("jti"))
		if err != nil {
			if strings.Contains(err.Error(), "aud") {
				fail(w, "Audience validation failed")
			} else {
				fail(w, "JWT is has expired or is not valid")
			}
			return
		}
		mu.Lock()
		replay := seenJTI[tk.JwtID()]
		seenJTI[tk.JwtID()] = true
		mu.Unlock()
		if replay {
			fail(w, "JWT is has expired or is not valid")
			return
		}
		form := url.Values{"token": {r.PostForm.Get("token")}}
		req, _ := http.NewRequest(http.MethodPost, s.IntrospectionURL(), strings.NewReader(form.Encode()))
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
	return srv
}

func TestClientSecretJWT(t *testing.T) {
	s := testas.Start(t)
	tok := s.Token(t, "svc-a", "read")
	const secret = "client-secret-of-at-least-32-bytes!"

	// The real AS treats every client_assertion as private_key_jwt: an HMAC
	// assertion is refused there, which is why the verifier below fronts it.
	direct := &Introspector{Endpoint: s.IntrospectionURL(), Auth: ClientSecretJWT{ClientID: testas.GatewayID, Secret: testas.GatewaySecret, Audience: s.Issuer()}}
	if _, ase := caIntrospectError(t, direct, tok); ase.Code != "unauthorized_client" {
		t.Errorf("real AS on an HS256 assertion: %v", ase)
	}

	front := caSecretJWTServer(t, s, "gw-hs", secret)
	good := &Introspector{Endpoint: front.URL, Auth: ClientSecretJWT{ClientID: "gw-hs", Secret: secret, Audience: s.Issuer()}}
	for i := 0; i < 3; i++ { // a replayed jti would be refused: each call signs anew
		d, err := good.Introspect(context.Background(), tok)
		if err != nil || d.ClientID() != "svc-a" || !d.HasScope("read") {
			t.Fatalf("%+v %v", d, err)
		}
	}
	for _, tc := range []struct {
		name    string
		auth    ClientSecretJWT
		mention string
	}{
		{"wrong secret", ClientSecretJWT{ClientID: "gw-hs", Secret: "wrong", Audience: s.Issuer()}, "client_secret"},
		{"wrong audience", ClientSecretJWT{ClientID: "gw-hs", Secret: secret, Audience: s.TokenURL()}, "assertion_audience"},
		{"expired (clock behind)", ClientSecretJWT{ClientID: "gw-hs", Secret: secret, Audience: s.Issuer(),
			Now: func() time.Time { return time.Now().Add(-time.Hour) }}, "clock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ase := caIntrospectError(t, &Introspector{Endpoint: front.URL, Auth: tc.auth}, tok)
			if !strings.Contains(ase.Hint(), tc.mention) {
				t.Errorf("hint %q does not mention %q", ase.Hint(), tc.mention)
			}
		})
	}
}

// --- fuzzing the key parser ---

func FuzzParsePrivateKey(f *testing.F) {
	jwkOf := func(pemText string, set map[string]any) []byte {
		k, err := ParsePrivateKey([]byte(pemText), "")
		if err != nil {
			f.Fatal(err)
		}
		for name, v := range set {
			_ = k.Set(name, v)
		}
		b, err := json.Marshal(k)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	rsaKey, err := x509.ParsePKCS1PrivateKey(mustPEMBlock(f, opensslRSAPKCS1))
	if err != nil {
		f.Fatal(err)
	}
	seeds := [][]byte{
		[]byte(opensslRSAPKCS1),
		caPKCS8(f, rsaKey),
		[]byte(opensslECWithParams),
		[]byte(opensslEd25519PKCS8),
		jwkOf(opensslECWithParams, map[string]any{"kid": "a"}),
		jwkOf(opensslEd25519PKCS8, nil),
		jwkOf(opensslRSAPKCS1, map[string]any{"alg": "PS256"}),
		[]byte(`{"keys":[` + string(jwkOf(opensslEd25519PKCS8, map[string]any{"kid": "x"})) + `]}`),
		[]byte(`{"kty":"oct","k":"AAAA"}`),
		[]byte(`{"kty":"EC","crv":"P-256","x":"","y":"","d":""}`),
		[]byte(`{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}`),
		[]byte(`{"kty":"OKP","crv":"Ed25519","x":"AAAA","d":"AAAA"}`),
		[]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		[]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"),
		[]byte(""),
		[]byte("{"),
	}
	for _, s := range seeds {
		f.Add(s, "")
		f.Add(s, "kid")
	}
	f.Fuzz(func(t *testing.T, data []byte, kid string) {
		key, err := ParsePrivateKey(data, kid)
		if err != nil {
			if key != nil {
				t.Fatal("key returned with an error")
			}
			return
		}
		// Whatever is accepted is a complete signing key: alg and kid set,
		// and it signs an assertion that its public half verifies.
		alg := jwa.SignatureAlgorithm(key.Algorithm().String())
		if alg == "" || key.KeyID() == "" {
			t.Fatalf("accepted key without alg/kid: %q %q", alg, key.KeyID())
		}
		if _, isRSA := key.(jwk.RSAPrivateKey); isRSA {
			// An RSA signature costs ~100 ms under coverage
			// instrumentation; the unit tests sign with RSA keys.
			return
		}
		form := url.Values{}
		if err := (PrivateKeyJWT{ClientID: "c", Key: key, Audience: "a"}).Authenticate(context.Background(), "https://as/introspect", form, http.Header{}); err != nil {
			t.Fatalf("accepted key cannot sign: %v", err)
		}
		pub, err := key.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jws.Verify([]byte(form.Get("client_assertion")), jws.WithKey(alg, pub)); err != nil {
			t.Fatalf("accepted key's signature does not verify: %v", err)
		}
	})
}

func mustPEMBlock(t testing.TB, text string) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(text))
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}

// caECPrivateScalar is the private scalar of a P-256 key, fixed-width.
func caECPrivateScalar(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	b, err := k.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
