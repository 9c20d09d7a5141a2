// Package claims holds what every way of checking a token shares: the
// Decision about a good token, the typed Error of a rejection, and the
// strict readers they are built with — the one JSON object reader, the
// claim readers (NumericDate, String, StringOrList), the one time check,
// and the RFC 6750 b64token grammar. The JWT verifier and the
// introspection client both import it; it imports neither.
package claims

import (
	"errors"
	"strings"
	"time"
)

// Code is an OAuth 2.0 error code as a resource server reports it (RFC 6750
// §3.1), plus temporarily_unavailable for the gateway's own trouble.
type Code string

// The codes a client can see. Each maps to exactly one HTTP status in the
// Caddy module; nothing else is ever sent to a client.
const (
	CodeInvalidRequest     Code = "invalid_request"
	CodeInvalidToken       Code = "invalid_token"
	CodeInsufficientScope  Code = "insufficient_scope"
	CodeUnauthorizedClient Code = "unauthorized_client"
	// CodeInsufficientUserAuthentication: a good token whose user
	// authentication (acr, auth_time) is not what the route requires (RFC
	// 9470 §3); the client must have the user authenticate again.
	CodeInsufficientUserAuthentication Code = "insufficient_user_authentication"
	// CodeUnavailable means the gateway could not decide: the authorization
	// server or its keys were unreachable, slow, or refused the gateway's own
	// credentials. It never blames the caller's token.
	CodeUnavailable Code = "temporarily_unavailable"
)

// Error is a rejection. Description is shown to the client and must never
// contain the token or anything the authorization server said about the
// gateway; Reason and Hint are for the operator's log only.
type Error struct {
	Code        Code
	Description string
	// Scope lists the scopes the route requires, for insufficient_scope
	// (RFC 6750 §3: the scope attribute).
	Scope string
	// ACRValues and MaxAge are what insufficient_user_authentication asks
	// for (RFC 9470 §3): the acr values the route accepts, and how long ago
	// the user may have authenticated at most (0: no bound).
	ACRValues []string      `json:",omitempty"`
	MaxAge    time.Duration `json:",omitempty"`
	// Reason is a short machine-friendly label for logs and metrics, such as
	// "expired" or "introspection_timeout".
	Reason string
	// Hint tells the operator what to check when the fault is on the
	// gateway's side (credentials, clock, audience, ...).
	Hint string
	// TooLarge marks an invalid_request refused because the request body is
	// over the bound the gateway reads it within: HTTP 413 (RFC 9110
	// §15.5.14) rather than 400.
	TooLarge bool `json:",omitempty"`
	// Err is the cause, for logs. It is not serialised: a rejection cached
	// in the shared Redis tier keeps its code and description only.
	Err error `json:"-"`
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("introspect: ")
	b.WriteString(string(e.Code))
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is lets errors.Is(err, ErrInvalidToken) and friends match on the code alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Description == "" && t.Reason == ""
}

// Sentinels for errors.Is: they match any *Error with the same code.
var (
	ErrInvalidRequest     = &Error{Code: CodeInvalidRequest}
	ErrInvalidToken       = &Error{Code: CodeInvalidToken}
	ErrInsufficientScope  = &Error{Code: CodeInsufficientScope}
	ErrUnauthorizedClient = &Error{Code: CodeUnauthorizedClient}
	ErrUnavailable        = &Error{Code: CodeUnavailable}
)

// ErrInsufficientUserAuthentication matches RFC 9470 step-up rejections.
var ErrInsufficientUserAuthentication = &Error{Code: CodeInsufficientUserAuthentication}

// AsError returns err as an *Error. Anything that is not already one is
// treated as the gateway's own trouble (fail closed, 503), never as the
// caller's fault.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeUnavailable, Description: "the token could not be checked right now", Reason: "internal_error", Err: err}
}

// InvalidRequest builds an invalid_request rejection: the request, not the
// token, is malformed (RFC 6750 §3.1).
func InvalidRequest(reason, description string) *Error {
	return &Error{Code: CodeInvalidRequest, Reason: reason, Description: description}
}

// InvalidToken builds an invalid_token rejection whose description says which
// check failed, without echoing the token.
func InvalidToken(reason, description string, err error) *Error {
	return &Error{Code: CodeInvalidToken, Reason: reason, Description: description, Err: err}
}

// Unavailable builds a temporarily_unavailable error with an operator hint.
func Unavailable(reason, hint string, err error) *Error {
	return &Error{Code: CodeUnavailable, Reason: reason, Description: "the authorization server could not be reached; try again later", Hint: hint, Err: err}
}
