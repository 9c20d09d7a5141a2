// Package httpbody reads what the gateway is sent — an authorization
// server's answer, a JWKS, a key file, a caller's form body — within a
// bound, and recognises JSON media types. Every reader in introspect and its
// sub-packages uses it, so "too large" and "is JSON" mean one thing.
package httpbody

import (
	"errors"
	"io"
	"mime"
	"strings"
)

// ErrTooLarge is returned when a body exceeds its bound.
var ErrTooLarge = errors.New("response body exceeds the size limit")

// Read reads at most limit bytes (limit > 0) and fails with ErrTooLarge if
// there is more: a truncated JSON document must never be half-parsed.
func Read(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, ErrTooLarge
	}
	return b, nil
}

// IsJSON reports whether a Content-Type is JSON: application/json or a
// +json structured syntax suffix (RFC 6839 §3.1), such as
// application/jwk-set+json (RFC 7517 §8.5.1). Servers answering with HTML
// (a login page, a proxy error page) are a classic misconfiguration, and the
// log should say so.
func IsJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || len(mt) > len("+json") && strings.HasSuffix(mt, "+json")
}
