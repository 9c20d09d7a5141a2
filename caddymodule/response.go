package caddymodule

import (
	"encoding/json"
	"net/http"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"

	"github.com/tokengate/tokengate/introspect"
)

// statusFor is the one place where an error becomes an HTTP status
// (DESIGN.md's error table).
func statusFor(e *introspect.Error) int {
	switch e.Code {
	case introspect.CodeInvalidRequest:
		if e.TooLarge {
			return http.StatusRequestEntityTooLarge
		}
		return http.StatusBadRequest
	case introspect.CodeInvalidToken:
		return http.StatusUnauthorized
	case introspect.CodeInsufficientScope, introspect.CodeUnauthorizedClient:
		return http.StatusForbidden
	default:
		// Fail closed: anything unexpected is the gateway's trouble.
		return http.StatusServiceUnavailable
	}
}

// challenge answers a request with no bearer credentials at all: 401 with a
// bare challenge (RFC 6750 §3.1: "the resource server SHOULD NOT include an
// error code or other error information").
func (h *Handler) challenge(w http.ResponseWriter, r *http.Request) {
	h.metrics.decision("no_credentials")
	hdr := w.Header()
	hdr.Set("WWW-Authenticate", "Bearer realm="+h.realm)
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(`{"error_description":"bearer token required"}` + "\n"))
	if c := h.logger.Check(zapcore.InfoLevel, "request rejected"); c != nil {
		c.Write(zap.String("outcome", "no_credentials"), zap.String("reason", "no_token"),
			zap.String("remote_ip", remoteIP(r)))
	}
}

// reject writes the RFC 6750 response for e and logs one line.
func (h *Handler) reject(w http.ResponseWriter, r *http.Request, e *introspect.Error, fingerprint string) {
	h.rejectFrom(w, r, e, fingerprint, h.metrics.none)
}

// rejectFrom is reject for a decision an issuer took part in: it is counted
// under that issuer.
func (h *Handler) rejectFrom(w http.ResponseWriter, r *http.Request, e *introspect.Error, fingerprint string, from *issuerMetrics) {
	status := statusFor(e)
	code := string(e.Code)
	if status == http.StatusServiceUnavailable {
		code = string(introspect.CodeUnavailable)
	}
	desc := rfc6750Value(e.Description)
	from.decision(outcomeLabel(e.Code))

	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.bearer.error", code)
		repl.Set("http.auth.bearer.error_description", desc)
	}

	hdr := w.Header()
	if status == http.StatusServiceUnavailable {
		// The caller's token is not at fault: no challenge that would make a
		// client throw its token away, and a hint when to retry.
		hdr.Set("Retry-After", h.retry)
	} else {
		var b strings.Builder
		b.WriteString("Bearer realm=")
		b.WriteString(h.realm)
		b.WriteString(`, error="`)
		b.WriteString(code)
		b.WriteByte('"')
		if desc != "" {
			b.WriteString(`, error_description="`)
			b.WriteString(desc)
			b.WriteByte('"')
		}
		if e.Code == introspect.CodeInsufficientScope && e.Scope != "" {
			b.WriteString(`, scope="`)
			b.WriteString(scopeValue(e.Scope))
			b.WriteByte('"')
		}
		hdr.Set("WWW-Authenticate", b.String())
	}
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body, _ := json.Marshal(errorBody{Error: code, Description: desc, Scope: e.Scope})
	_, _ = w.Write(append(body, '\n'))

	h.logRejection(r, e, status, fingerprint)
}

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
	Scope       string `json:"scope,omitempty"`
}

func (h *Handler) logRejection(r *http.Request, e *introspect.Error, status int, fingerprint string) {
	level, msg := zapcore.InfoLevel, "request rejected"
	if status == http.StatusServiceUnavailable {
		// The gateway's own trouble with the authorization server is an
		// operator problem, visible with Caddy's default log level.
		level, msg = zapcore.ErrorLevel, "cannot validate token: "+e.Reason
	}
	c := h.logger.Check(level, msg)
	if c == nil {
		return
	}
	fields := []zap.Field{
		zap.String("outcome", outcomeLabel(e.Code)),
		zap.String("reason", e.Reason),
		zap.Int("status", status),
		zap.String("remote_ip", remoteIP(r)),
	}
	if fingerprint != "" {
		fields = append(fields, zap.String("token_fingerprint", fingerprint))
	}
	if e.Hint != "" {
		fields = append(fields, zap.String("check", e.Hint))
	}
	var ase *introspect.ASError
	if asErrorAs(e, &ase) {
		fields = append(fields, zap.String("as_endpoint", ase.Endpoint), zap.Int("as_status", ase.Status),
			zap.String("as_error", ase.Code), zap.String("as_error_description", ase.Description))
	} else if e.Err != nil && status == http.StatusServiceUnavailable {
		fields = append(fields, zap.Error(e.Err))
	}
	if e.Code == introspect.CodeInvalidToken && e.Err != nil {
		fields = append(fields, zap.String("detail", e.Err.Error()))
	}
	c.Write(fields...)
}

func outcomeLabel(c introspect.Code) string {
	switch c {
	case introspect.CodeInvalidRequest, introspect.CodeInvalidToken,
		introspect.CodeInsufficientScope, introspect.CodeUnauthorizedClient:
		return string(c)
	}
	return "unavailable"
}

// rfc6750Value keeps an attribute value within RFC 6750 §3's character set
// for error_description: %x20-21 / %x23-5B / %x5D-7E (no quote, no
// backslash, no control or non-ASCII characters).
func rfc6750Value(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b = append(b, '\'')
		case c < 0x20 || c > 0x7e || c == '\\':
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// scopeValue keeps scope tokens within RFC 6750 §3's scope-token set
// (%x21 / %x23-5B / %x5D-7E), separated by single spaces.
func scopeValue(s string) string {
	fields := strings.Fields(s)
	for i, f := range fields {
		fields[i] = strings.Map(func(r rune) rune {
			if r < 0x21 || r > 0x7e || r == '"' || r == '\\' {
				return -1
			}
			return r
		}, f)
	}
	return strings.Join(fields, " ")
}

// quoteRealm renders the realm as an RFC 7230 quoted-string.
func quoteRealm(realm string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(realm) + `"`
}

func remoteIP(r *http.Request) string {
	if ip, ok := caddyClientIP(r); ok {
		return ip
	}
	return r.RemoteAddr
}
