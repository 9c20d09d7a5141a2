package introspect

import (
	"github.com/tokengate/tokengate/introspect/claims"
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
