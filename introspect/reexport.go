package introspect

import (
	"context"
	"net/http"
	"time"

	"github.com/tokengate/tokengate/introspect/asclient"
	"github.com/tokengate/tokengate/introspect/claims"
	"github.com/tokengate/tokengate/introspect/jwt"
)

// The values every token path shares (package claims).
type (
	// Decision is what the gateway knows about a good token.
	Decision = claims.Decision
	// DecisionFields are the parts a Decision is built from.
	DecisionFields = claims.DecisionFields
	// Verdict is what the decision cache stores for a token hash.
	Verdict = claims.Verdict
	// Error is a rejection, mapped to one HTTP status by the Caddy module.
	Error = claims.Error
	// Code is an OAuth 2.0 error code (RFC 6750 §3.1).
	Code = claims.Code
)

// The codes a client can see.
const (
	CodeInvalidRequest     = claims.CodeInvalidRequest
	CodeInvalidToken       = claims.CodeInvalidToken
	CodeInsufficientScope  = claims.CodeInsufficientScope
	CodeUnauthorizedClient = claims.CodeUnauthorizedClient
	CodeUnavailable        = claims.CodeUnavailable
	// CodeInsufficientUserAuthentication is RFC 9470 step-up.
	CodeInsufficientUserAuthentication = claims.CodeInsufficientUserAuthentication
)

// Sentinels for errors.Is: they match any *Error with the same code.
var (
	ErrInvalidRequest     = claims.ErrInvalidRequest
	ErrInvalidToken       = claims.ErrInvalidToken
	ErrInsufficientScope  = claims.ErrInsufficientScope
	ErrUnauthorizedClient = claims.ErrUnauthorizedClient
	ErrUnavailable        = claims.ErrUnavailable

	ErrInsufficientUserAuthentication = claims.ErrInsufficientUserAuthentication
)

// AsError returns err as an *Error; anything else is the gateway's own
// trouble (503), never the caller's fault.
func AsError(err error) *Error { return claims.AsError(err) }

// InvalidToken builds an invalid_token rejection.
func InvalidToken(reason, description string, err error) *Error {
	return claims.InvalidToken(reason, description, err)
}

// Unavailable builds a temporarily_unavailable error with an operator hint.
func Unavailable(reason, hint string, err error) *Error { return claims.Unavailable(reason, hint, err) }

// Local JWT verification and its keys (package jwt).
type (
	// KeySet supplies the keys that verify JWT access tokens.
	KeySet = jwt.KeySet
	// RemoteKeySetConfig configures a key set served from a JWKS URL.
	RemoteKeySetConfig = jwt.RemoteKeySetConfig
)

// LooksLikeJWT reports whether token is structurally a JWS compact
// serialization; it verifies nothing.
func LooksLikeJWT(token string) bool { return jwt.LooksLike(token) }

// NewRemoteKeySet builds a key set served from a JWKS URL.
func NewRemoteKeySet(ctx context.Context, cfg RemoteKeySetConfig) (*jwt.RemoteKeySet, error) {
	return jwt.NewRemoteKeySet(ctx, cfg)
}

// LoadKeySetFile reads a JWK Set, a JWK, or PEM public keys from path.
func LoadKeySetFile(path string) (*jwt.StaticKeySet, error) { return jwt.LoadKeySetFile(path) }

// Talking to the authorization server (package asclient).
type (
	// Metadata is the part of an authorization server's metadata the
	// gateway uses.
	Metadata = asclient.Metadata
	// Introspector is the RFC 7662 client.
	Introspector = asclient.Introspector
	// ClientAuthenticator adds the gateway's own client authentication to
	// a call it makes to the authorization server.
	ClientAuthenticator = asclient.ClientAuthenticator
	// ASError is an OAuth error the authorization server returned to the
	// gateway's own call.
	ASError = asclient.ASError
)

// ClientAssertionTypeJWTBearer is the client_assertion_type of RFC 7523 §2.2.
const ClientAssertionTypeJWTBearer = asclient.ClientAssertionTypeJWTBearer

// Discover fetches the issuer's metadata (RFC 8414, then OpenID Connect
// Discovery) and checks that it is about that issuer.
func Discover(ctx context.Context, client *http.Client, issuer string) (*Metadata, error) {
	return asclient.Discover(ctx, client, issuer)
}

// NewHTTPClient returns the client used for every call to an authorization
// server: bounded in time, no redirects, no cookies.
func NewHTTPClient(timeout time.Duration) *http.Client { return asclient.NewHTTPClient(timeout) }

// AssertionTargetOf reports the aud of the client assertions auth sends on
// a call to endpoint, and why; ok is false when auth sends none.
func AssertionTargetOf(auth ClientAuthenticator, endpoint string) (asclient.AssertionTarget, bool) {
	return asclient.AssertionTargetOf(auth, endpoint)
}

// ReasonServerErrorOnToken is the Reason of a 503 for a 5xx the server gave
// for one token while it answers the gateway's other requests.
const ReasonServerErrorOnToken = asclient.ReasonServerErrorOnToken
