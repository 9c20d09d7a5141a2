package introspect

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/tokengate/tokengate/introspect/jwt"
)

// ClientAssertionTypeJWTBearer is the only client_assertion_type of RFC 7523
// §2.2. Both seeds list a typo here as a classic cause of invalid_client, so
// the value is a constant, never built from parts.
const ClientAssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Assertion lifetimes. RFC 7523 §3 only asks for an exp; the Oath seed
// rejects exp more than 24 h ahead and recommends about 10 minutes, Redox
// wants iat within the last 5 minutes. A short default keeps a leaked
// assertion nearly worthless; an hour is the most we ever sign.
const (
	DefaultAssertionLifetime = 2 * time.Minute
	MaxAssertionLifetime     = time.Hour
)

// maxPrivateKeyBytes bounds a private key file; a real one is a few KiB.
const maxPrivateKeyBytes = 1 << 20

// maxRSABits bounds RSA keys we sign with: a 16 kbit key costs ~1 s per
// assertion and is certainly a mistake (or a hostile file).
const maxRSABits = 8192

// ClientSecretJWT is client_secret_jwt (OIDC Core §9, RFC 7523 §2.2): the
// gateway proves it knows the client secret by an HMAC-signed assertion
// instead of sending the secret. A fresh assertion is made for every call.
type ClientSecretJWT struct {
	ClientID string
	Secret   string
	// Alg is HS256 (the default), HS384 or HS512.
	Alg jwa.SignatureAlgorithm
	// Audience (assertion_audience), if set, is every assertion's aud;
	// else Issuer, the AS's issuer identifier; else the URL of the endpoint
	// each assertion is sent to (AssertionAudience).
	Audience string
	Issuer   string
	// Lifetime is exp − iat. Default DefaultAssertionLifetime, at most
	// MaxAssertionLifetime.
	Lifetime time.Duration
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

// Method implements ClientAuthenticator.
func (ClientSecretJWT) Method() string { return "client_secret_jwt" }

func (a ClientSecretJWT) alg() jwa.SignatureAlgorithm {
	if a.Alg == "" {
		return jwa.HS256
	}
	return a.Alg
}

// Validate reports a configuration that could never authenticate.
func (a ClientSecretJWT) Validate() error {
	if a.ClientID == "" {
		return errors.New("client_secret_jwt: client_id is required")
	}
	if a.Secret == "" {
		return errors.New("client_secret_jwt: client_secret is required (is its placeholder resolved?)")
	}
	switch a.alg() {
	case jwa.HS256, jwa.HS384, jwa.HS512:
	default:
		// Not even "none" by accident: the Oath seed's "No enum constant
		// ...JwsAlgorithm.none" is what a server says to an alg-less JWT.
		return fmt.Errorf("client_secret_jwt: algorithm %q is not HS256, HS384 or HS512", a.Alg)
	}
	return validateAssertionLifetime(a.Lifetime)
}

// AudienceFor is the aud of an assertion sent to endpoint, and its source.
func (a ClientSecretJWT) AudienceFor(endpoint string) (aud, source string) {
	return AssertionAudience(a.Audience, a.Issuer, endpoint)
}

// Authenticate adds a new HMAC-signed client assertion, meant for endpoint,
// to the form.
func (a ClientSecretJWT) Authenticate(_ context.Context, endpoint string, form url.Values, _ http.Header) error {
	if err := a.Validate(); err != nil {
		return err
	}
	aud, _ := a.AudienceFor(endpoint)
	if aud == "" {
		return fmt.Errorf("client_secret_jwt: %w", errNoAudience)
	}
	// No kid: a client secret has no key id, and its RFC 7638 thumbprint
	// would be a SHA-256 of the secret, which an eavesdropper could attack
	// offline. Servers find the secret by iss/sub (= client_id).
	assertion, err := signAssertion(a.ClientID, aud, a.Lifetime, a.Now, a.alg(), []byte(a.Secret), "")
	if err != nil {
		return fmt.Errorf("client_secret_jwt: %w", err)
	}
	setAssertion(form, a.ClientID, assertion)
	return nil
}

// PrivateKeyJWT is private_key_jwt (OIDC Core §9, RFC 7523 §2.2): the gateway
// signs an assertion with its private key; the AS holds the public key. A
// fresh assertion is made for every call.
type PrivateKeyJWT struct {
	ClientID string
	// Key is the private key (RSA ≥ 2048 bits, EC P-256/384/521, Ed25519),
	// usually from LoadPrivateKey. Its alg, if set, is used; otherwise RSA
	// signs RS256, EC the curve's ES*, Ed25519 EdDSA. Its kid, if set, is
	// sent; otherwise its RFC 7638 thumbprint.
	Key jwk.Key
	// Audience and Issuer as for ClientSecretJWT.
	Audience string
	Issuer   string
	Lifetime time.Duration
	Now      func() time.Time
}

// Method implements ClientAuthenticator.
func (PrivateKeyJWT) Method() string { return "private_key_jwt" }

// Validate reports a configuration that could never authenticate.
func (a PrivateKeyJWT) Validate() error {
	_, _, err := a.resolve()
	return err
}

func (a PrivateKeyJWT) resolve() (jwa.SignatureAlgorithm, string, error) {
	if a.ClientID == "" {
		return "", "", errors.New("private_key_jwt: client_id is required")
	}
	if a.Key == nil {
		return "", "", errors.New("private_key_jwt: private_key is required")
	}
	alg, err := privateKeyAlg(a.Key)
	if err != nil {
		return "", "", fmt.Errorf("private_key_jwt: %w", err)
	}
	kid, err := privateKeyID(a.Key, "")
	if err != nil {
		return "", "", fmt.Errorf("private_key_jwt: %w", err)
	}
	if err := validateAssertionLifetime(a.Lifetime); err != nil {
		return "", "", err
	}
	return alg, kid, nil
}

// AudienceFor is the aud of an assertion sent to endpoint, and its source.
func (a PrivateKeyJWT) AudienceFor(endpoint string) (aud, source string) {
	return AssertionAudience(a.Audience, a.Issuer, endpoint)
}

// Authenticate adds a new signed client assertion, meant for endpoint, to
// the form.
func (a PrivateKeyJWT) Authenticate(_ context.Context, endpoint string, form url.Values, _ http.Header) error {
	alg, kid, err := a.resolve()
	if err != nil {
		return err
	}
	aud, _ := a.AudienceFor(endpoint)
	if aud == "" {
		return fmt.Errorf("private_key_jwt: %w", errNoAudience)
	}
	assertion, err := signAssertion(a.ClientID, aud, a.Lifetime, a.Now, alg, a.Key, kid)
	if err != nil {
		return fmt.Errorf("private_key_jwt: %w", err)
	}
	setAssertion(form, a.ClientID, assertion)
	return nil
}

// Where a client assertion's aud comes from (AssertionAudience). The doctor
// shows these words next to the aud.
const (
	AssertionAudConfigured = "configured"
	AssertionAudIssuer     = "issuer"
	AssertionAudEndpoint   = "endpoint URL"
)

// AssertionAudience decides the aud of a client assertion sent to endpoint,
// and says why: configured (assertion_audience) wins; else the issuer
// identifier, which current guidance on RFC 7523 recommends and some servers
// (zitadel) require; else the URL of the endpoint the assertion is sent to.
// RFC 7523 §3 and OIDC Core §9 name the token endpoint URL, oidc-provider
// accepts "endpoint url, issuer identifier or token endpoint url", and Okta
// wants exactly the URL called, so without an issuer the endpoint is the
// value servers accept, and it differs per call (introspection endpoint,
// token endpoint). The aud is "" only when all three are.
func AssertionAudience(configured, issuer, endpoint string) (aud, source string) {
	switch {
	case configured != "":
		return configured, AssertionAudConfigured
	case issuer != "":
		return issuer, AssertionAudIssuer
	}
	return endpoint, AssertionAudEndpoint
}

// errNoAudience: only a caller that sends the request nowhere gets it.
var errNoAudience = errors.New("client assertion: no audience (no assertion_audience, no issuer, and no endpoint URL to default it to)")

// AssertionTarget says which aud the client assertions of an authenticator
// carry, and why.
type AssertionTarget struct {
	// Endpoint is where the assertion is sent: the endpoint asked about, or
	// for auth_method bearer the token endpoint.
	Endpoint string
	Audience string
	// Source is AssertionAudConfigured, AssertionAudIssuer or AssertionAudEndpoint.
	Source string
}

// AssertionTargetOf reports the aud of the assertions auth sends on a call
// to endpoint (for auth_method bearer, those of its token requests). ok is
// false when auth sends no assertion. It asks the authenticators themselves,
// so what the doctor shows is what they sign.
func AssertionTargetOf(auth ClientAuthenticator, endpoint string) (t AssertionTarget, ok bool) {
	if b, isBearer := auth.(*BearerAuth); isBearer {
		auth, endpoint = b.ClientAuth, b.TokenEndpoint
	}
	a, ok := auth.(interface {
		AudienceFor(endpoint string) (aud, source string)
	})
	if !ok {
		return AssertionTarget{}, false
	}
	aud, source := a.AudienceFor(endpoint)
	return AssertionTarget{Endpoint: endpoint, Audience: aud, Source: source}, true
}

func validateAssertionLifetime(lifetime time.Duration) error {
	if lifetime < 0 {
		return fmt.Errorf("client assertion: lifetime %v is negative", lifetime)
	}
	if lifetime > MaxAssertionLifetime {
		// The Oath seed: "exp should be less than 24 hrs ... preferable
		// currentTime + 600". Hours-long assertions are replayable for hours.
		return fmt.Errorf("client assertion: lifetime %v is longer than %v; a few minutes is what servers accept", lifetime, MaxAssertionLifetime)
	}
	if lifetime > 0 && lifetime < time.Second {
		return fmt.Errorf("client assertion: lifetime %v is shorter than a second (exp and iat are whole seconds)", lifetime)
	}
	return nil
}

// setAssertion writes RFC 7521 §4.2 parameters, names all lower case as
// RFC 6749 §3.1/§3.2 and the Oath seed require.
func setAssertion(form url.Values, clientID, assertion string) {
	form.Set("client_assertion_type", ClientAssertionTypeJWTBearer)
	form.Set("client_assertion", assertion)
	// RFC 7521 §4.2 makes client_id OPTIONAL next to an assertion, but
	// servers that look the client (and its realm or keys) up before they
	// parse the assertion need it, and RFC 6749 §3.2.1 / OIDC Core §9 show
	// it in their examples. Sending it is harmless: it must equal iss/sub.
	form.Set("client_id", clientID)
	// Exactly one authentication method per request (RFC 6749 §2.3).
	form.Del("client_secret")
}

// assertionClaims is the RFC 7523 §3 claim set. A struct (not a map) keeps
// iat/exp integers — the seeds' "exp and iat should be numeric ... not
// strings" — and aud a single string, which every server accepts
// (RFC 7519 §4.1.3 allows a string; some servers reject an array).
type assertionClaims struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Aud string `json:"aud"`
	Jti string `json:"jti"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

func signAssertion(clientID, aud string, lifetime time.Duration, now func() time.Time, alg jwa.SignatureAlgorithm, key any, kid string) (string, error) {
	if lifetime == 0 {
		lifetime = DefaultAssertionLifetime
	}
	if now == nil {
		now = time.Now
	}
	// Whole seconds, rounded down: iat must never be in the AS's future
	// (Redox: "iat ... (it should be in the past)"; zitadel allows no skew).
	iat := now().Unix()
	jti, err := newJTI()
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(assertionClaims{
		Iss: clientID, Sub: clientID, Aud: aud, Jti: jti,
		Iat: iat, Exp: iat + int64(lifetime/time.Second),
	})
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	// alg is always written by jws.Sign (the seeds' missing-alg mistake
	// cannot happen); typ "JWT" and kid (Redox: "JWT header kid property is
	// required") are set explicitly.
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		return "", err
	}
	if kid != "" {
		if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
			return "", err
		}
	}
	signed, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("signing the client assertion: %w", err)
	}
	return string(signed), nil
}

// newJTI is 128 random bits: RFC 7523 §3 lets servers refuse a replayed
// jti, so two assertions must never share one.
func newJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// privateKeyAlg is the algorithm key signs with: its own alg if set (it must
// fit the key), else the one its type implies.
func privateKeyAlg(key jwk.Key) (jwa.SignatureAlgorithm, error) {
	if u := key.KeyUsage(); u != "" && u != string(jwk.ForSignature) {
		return "", fmt.Errorf("the key's use is %q, not sig", u)
	}
	if ops := key.KeyOps(); len(ops) > 0 && !containsKeyOp(ops, jwk.KeyOpSign) {
		return "", errors.New("the key's key_ops do not include sign")
	}
	declared := jwa.SignatureAlgorithm(key.Algorithm().String())
	switch k := key.(type) {
	case jwk.RSAPrivateKey:
		if bits := jwt.RSABits(k); bits < jwt.MinRSABits || bits > maxRSABits {
			return "", fmt.Errorf("the RSA key is %d bits; %d to %d are accepted (RFC 7518 §3.3)", bits, jwt.MinRSABits, maxRSABits)
		}
		switch declared {
		case "":
			return jwa.RS256, nil
		case jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512:
			return declared, nil
		}
	case jwk.ECDSAPrivateKey:
		want := jwt.AlgForCurve(k.Crv())
		if want == "" {
			return "", fmt.Errorf("the EC curve %q is not P-256, P-384 or P-521", k.Crv())
		}
		if declared == "" || declared == want {
			return want, nil
		}
	case jwk.OKPPrivateKey:
		if k.Crv() != jwa.Ed25519 {
			return "", fmt.Errorf("the OKP curve %q cannot sign (Ed25519 can)", k.Crv())
		}
		if declared == "" || declared == jwa.EdDSA {
			return jwa.EdDSA, nil
		}
	case jwk.RSAPublicKey, jwk.ECDSAPublicKey, jwk.OKPPublicKey:
		return "", errors.New("this is a public key: private_key needs the private key (the server gets the public one)")
	case jwk.SymmetricKey:
		return "", errors.New("this is a shared secret (kty oct): use auth_method client_secret_jwt with it as client_secret")
	default:
		return "", fmt.Errorf("unsupported key type %q", key.KeyType())
	}
	return "", fmt.Errorf("the key's alg %q does not fit its type %s", declared, key.KeyType())
}

func containsKeyOp(ops jwk.KeyOperationList, op jwk.KeyOperation) bool {
	for _, o := range ops {
		if o == op {
			return true
		}
	}
	return false
}

// privateKeyID is the kid an assertion carries: the key's own, else
// configured, else the RFC 7638 thumbprint (SHA-256, base64url), which is what
// many servers compute for a registered key that has no kid.
func privateKeyID(key jwk.Key, configured string) (string, error) {
	if kid := key.KeyID(); kid != "" {
		return kid, nil
	}
	if configured != "" {
		return configured, nil
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("computing the key's RFC 7638 thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// LoadPrivateKey reads the gateway's private key for private_key_jwt from a
// PEM file (PKCS#8 "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY", SEC1 "EC PRIVATE
// KEY") or a JWK / JWK Set JSON file. See ParsePrivateKey.
func LoadPrivateKey(path, kid string) (jwk.Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPrivateKeyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("private_key: reading %s: %w", path, err)
	}
	k, err := ParsePrivateKey(data, kid)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return k, nil
}

// ParsePrivateKey parses a private signing key (PEM or JWK JSON) and returns
// it as a JWK with alg and kid set: the alg is the JWK's own or the one the
// key type implies (RSA→RS256, P-256→ES256, Ed25519→EdDSA); the kid is the
// JWK's own, else kid, else the key's RFC 7638 thumbprint. In a JWK Set with
// several keys, kid selects the key.
func ParsePrivateKey(data []byte, kid string) (jwk.Key, error) {
	if len(data) > maxPrivateKeyBytes {
		return nil, fmt.Errorf("private_key: larger than %d bytes", maxPrivateKeyBytes)
	}
	data = bytes.TrimSpace(data)
	var key jwk.Key
	var err error
	switch {
	case bytes.Contains(data, []byte("-----BEGIN")):
		key, err = parsePEMPrivateKey(data)
	case len(data) > 0 && data[0] == '{':
		key, err = parseJWKPrivateKey(data, kid)
	default:
		err = errors.New("neither PEM nor JWK JSON")
	}
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	// Work on a copy: setting alg/kid must not touch a caller's key.
	if key, err = key.Clone(); err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	if err := key.Validate(); err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	alg, err := privateKeyAlg(key)
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	if err := checkRawPrivateKey(key); err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	id, err := privateKeyID(key, kid)
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	if err := key.Set(jwk.AlgorithmKey, alg); err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	if err := key.Set(jwk.KeyIDKey, id); err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	return key, nil
}

// checkRawPrivateKey makes sure the private half is consistent with the
// public half, so a corrupt JWK fails at load time and not as a string of
// invalid_client answers.
func checkRawPrivateKey(key jwk.Key) error {
	var raw any
	if err := key.Raw(&raw); err != nil {
		return err
	}
	switch k := raw.(type) {
	case *rsa.PrivateKey:
		if err := k.Validate(); err != nil {
			return fmt.Errorf("invalid RSA private key: %w", err)
		}
	case *ecdsa.PrivateKey:
		// The ECDH forms check that d is in range and the point is on the
		// curve; then d·G must be the published point.
		priv, err := k.ECDH()
		if err != nil {
			return fmt.Errorf("invalid EC private key: %w", err)
		}
		pub, err := k.PublicKey.ECDH()
		if err != nil {
			return fmt.Errorf("invalid EC public key: %w", err)
		}
		if !priv.PublicKey().Equal(pub) {
			return errors.New("invalid EC private key: d does not match x/y")
		}
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return errors.New("invalid Ed25519 private key")
		}
		seed := ed25519.NewKeyFromSeed(k.Seed())
		if !bytes.Equal(seed, k) {
			return errors.New("invalid Ed25519 private key: d does not match x")
		}
	default:
		return fmt.Errorf("unsupported private key type %T", raw)
	}
	return nil
}

func parsePEMPrivateKey(data []byte) (jwk.Key, error) {
	var found any
	var sawPublic bool
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if _, enc := block.Headers["Proc-Type"]; enc {
			return nil, errors.New("the PEM key is encrypted: store it unencrypted (e.g. openssl pkcs8 -topk8 -nocrypt) and protect the file instead")
		}
		var raw any
		var err error
		switch block.Type {
		case "PRIVATE KEY": // PKCS#8
			raw, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY": // PKCS#1
			raw, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY": // SEC1
			raw, err = x509.ParseECPrivateKey(block.Bytes)
		case "EC PARAMETERS":
			// openssl ecparam -genkey writes this before the key.
			continue
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the PEM key is encrypted (PKCS#8): store it unencrypted (openssl pkcs8 -topk8 -nocrypt) and protect the file instead")
		case "OPENSSH PRIVATE KEY":
			return nil, errors.New("the key is in OpenSSH format: convert it to PKCS#8 (ssh-keygen -p -m PKCS8 -f FILE)")
		case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
			sawPublic = true
			continue
		default:
			return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parsing the PEM %q block: %w", block.Type, err)
		}
		if found != nil {
			return nil, errors.New("the PEM file holds more than one private key")
		}
		found = raw
	}
	if found == nil {
		if sawPublic {
			return nil, errors.New("the PEM file holds only a public key or certificate: private_key needs the private key (the server gets the public one)")
		}
		return nil, errors.New("no PEM private key block found")
	}
	switch k := found.(type) {
	case *rsa.PrivateKey, ed25519.PrivateKey:
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, fmt.Errorf("the EC curve %s is not P-256, P-384 or P-521", k.Curve.Params().Name)
		}
	case *ecdh.PrivateKey:
		return nil, errors.New("an X25519 key cannot sign: use Ed25519, EC P-256 or RSA")
	default:
		return nil, fmt.Errorf("unsupported private key type %T", found)
	}
	return jwk.FromRaw(found)
}

func parseJWKPrivateKey(data []byte, kid string) (jwk.Key, error) {
	// jwk.Parse takes a single JWK as well as a JWK Set.
	set, err := jwk.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("parsing the JWK: %w", err)
	}
	switch n := set.Len(); {
	case n == 0:
		return nil, errors.New("the JWK Set is empty")
	case n == 1:
		k, _ := set.Key(0)
		return k, nil
	case kid == "":
		return nil, fmt.Errorf("the JWK Set holds %d keys (kids %s): name one as private_key's kid", n, setKids(set))
	default:
		k, ok := set.LookupKeyID(kid)
		if !ok {
			return nil, fmt.Errorf("the JWK Set has no key with kid %q (it has %s)", kid, setKids(set))
		}
		return k, nil
	}
}

func setKids(set jwk.Set) string {
	var ids []string
	for i := 0; i < set.Len() && i < 10; i++ {
		k, _ := set.Key(i)
		ids = append(ids, fmt.Sprintf("%q", k.KeyID()))
	}
	return strings.Join(ids, ", ")
}
