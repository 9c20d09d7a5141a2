package introspect

import (
	"context"

	"github.com/tokengate/tokengate/introspect/claims"
	"github.com/tokengate/tokengate/introspect/jwt"
)

// The values every token path shares (package claims).
type (
	// Decision is what the gateway knows about a good token.
	Decision = claims.Decision
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
)

// Sentinels for errors.Is: they match any *Error with the same code.
var (
	ErrInvalidRequest     = claims.ErrInvalidRequest
	ErrInvalidToken       = claims.ErrInvalidToken
	ErrInsufficientScope  = claims.ErrInsufficientScope
	ErrUnauthorizedClient = claims.ErrUnauthorizedClient
	ErrUnavailable        = claims.ErrUnavailable
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

// UnverifiedHeader reads a JWT's JOSE header without verifying anything,
// with the verifier's own decoder: for explaining a token, never for
// trusting it.
func UnverifiedHeader(token string) (map[string]any, error) { return jwt.UnverifiedHeader(token) }

// UnverifiedClaims reads a JWT's claims without verifying anything, with the
// verifier's own decoder: for routing and explaining a token, never for
// trusting it.
func UnverifiedClaims(token string) (map[string]any, error) { return jwt.UnverifiedClaims(token) }

// NewRemoteKeySet builds a key set served from a JWKS URL.
func NewRemoteKeySet(ctx context.Context, cfg RemoteKeySetConfig) (*jwt.RemoteKeySet, error) {
	return jwt.NewRemoteKeySet(ctx, cfg)
}

// LoadKeySetFile reads a JWK Set, a JWK, or PEM public keys from path.
func LoadKeySetFile(path string) (*jwt.StaticKeySet, error) { return jwt.LoadKeySetFile(path) }
