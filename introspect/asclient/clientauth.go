package asclient

import (
	"context"
	"net/http"
	"net/url"
)

// ClientAuthenticator adds the gateway's own client authentication to a call
// it makes to the authorization server (introspection or token endpoint).
type ClientAuthenticator interface {
	// Authenticate adds credentials to the form body and/or headers of a
	// request to endpoint. The endpoint is an argument because client
	// assertions may have to name it: without an issuer, an assertion's aud
	// is the URL it is sent to (RFC 7523 §3, OIDC Core §9), and one gateway
	// sends assertions to two endpoints (introspection, and the token
	// endpoint for auth_method bearer).
	Authenticate(ctx context.Context, endpoint string, form url.Values, header http.Header) error
	// Method is the RFC 8414 name (client_secret_basic, ...), for logs.
	Method() string
}

// Renewable is implemented by authenticators whose credentials can go stale
// (auth_method bearer): after the server answers 401, the call is retried
// once with fresh credentials.
type Renewable interface {
	Renew()
}

// SecretBasic is client_secret_basic (RFC 6749 §2.3.1).
type SecretBasic struct{ ClientID, ClientSecret string }

// Authenticate sets HTTP Basic credentials. RFC 6749 §2.3.1 requires the id
// and secret to be form-urlencoded before base64: secrets with ':' or '%'
// break at servers otherwise, a mistake many clients make.
func (a SecretBasic) Authenticate(_ context.Context, _ string, _ url.Values, h http.Header) error {
	r := http.Request{Header: h}
	r.SetBasicAuth(url.QueryEscape(a.ClientID), url.QueryEscape(a.ClientSecret))
	return nil
}

// Method implements ClientAuthenticator.
func (SecretBasic) Method() string { return "client_secret_basic" }

// SecretPost is client_secret_post (RFC 6749 §2.3.1): credentials in the body.
type SecretPost struct{ ClientID, ClientSecret string }

// Authenticate adds client_id and client_secret to the form body.
func (a SecretPost) Authenticate(_ context.Context, _ string, form url.Values, _ http.Header) error {
	form.Set("client_id", a.ClientID)
	form.Set("client_secret", a.ClientSecret)
	return nil
}

// Method implements ClientAuthenticator.
func (SecretPost) Method() string { return "client_secret_post" }
