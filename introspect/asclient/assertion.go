package asclient

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// ClientAssertionTypeJWTBearer is the only client_assertion_type of RFC 7523
// §2.2. Oath's and Redox's troubleshooting pages both list a typo here as a
// classic cause of invalid_client, so the value is a constant, never built
// from parts.
const ClientAssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Assertion lifetimes. RFC 7523 §3 only asks for an exp; Oath's server
// rejects exp more than 24 h ahead and recommends about 10 minutes, Redox's
// wants iat within the last 5 minutes. A short default keeps a leaked
// assertion nearly worthless; an hour is the most we ever sign.
const (
	DefaultAssertionLifetime = 2 * time.Minute
	MaxAssertionLifetime     = time.Hour
)

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
		// Not even "none" by accident: "No enum constant
		// ...JwsAlgorithm.none" is what Oath's server says to an alg-less
		// JWT.
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
		// Oath's server: "exp should be less than 24 hrs ... preferable
		// currentTime + 600". Hours-long assertions are replayable for hours.
		return fmt.Errorf("client assertion: lifetime %v is longer than %v; a few minutes is what servers accept", lifetime, MaxAssertionLifetime)
	}
	if lifetime > 0 && lifetime < time.Second {
		return fmt.Errorf("client assertion: lifetime %v is shorter than a second (exp and iat are whole seconds)", lifetime)
	}
	return nil
}

// setAssertion writes RFC 7521 §4.2 parameters, names all lower case as
// RFC 6749 §3.1/§3.2 and Oath's server require.
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
// iat/exp integers — Oath's and Redox's servers refuse them as strings
// ("exp and iat should be numeric ... not strings") — and aud a single
// string, which every server accepts (RFC 7519 §4.1.3 allows a string; some
// servers reject an array).
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
	// alg is always written by jws.Sign (an assertion without alg, which
	// servers refuse, cannot happen); typ "JWT" and kid (Redox: "JWT header kid property is
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
