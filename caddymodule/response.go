package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/introspect/dpop"
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
	case introspect.CodeInvalidToken, introspect.CodeInsufficientUserAuthentication, dpop.CodeInvalidProof, dpop.CodeUseNonce:
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
	h.setChallenge(hdr, r, h.wwwAuthenticate(nil, ""), "", "", "")
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
		h.setChallenge(hdr, r, h.wwwAuthenticate(e, desc), code, desc, e.Scope)
	}
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	eb := errorBody{Error: code, Description: desc, Scope: e.Scope}
	if e.Code == introspect.CodeInsufficientUserAuthentication {
		eb.ACRValues, eb.MaxAge = acrValue(e.ACRValues), introspect.MaxAgeSeconds(e.MaxAge)
	}
	body, _ := json.Marshal(eb)
	_, _ = w.Write(append(body, '\n'))

	h.logRejection(r, e, status, fingerprint)
}

// wwwAuthenticate is the one place the challenge is written: RFC 6750 §3,
// with e nil for a request without credentials (§3.1: no error code) and
// desc e's description made header-safe. It is the only challenge the
// gateway sends, so Bearer is always the first (MCP clients read only the
// first).
func (h *Handler) wwwAuthenticate(e *introspect.Error, desc string) string {
	var b strings.Builder
	b.WriteString("Bearer realm=")
	b.WriteString(h.realm)
	param := func(name, value string) {
		b.WriteString(", ")
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(value)
		b.WriteByte('"')
	}
	scope := false
	if e != nil {
		param("error", string(e.Code))
		if desc != "" {
			param("error_description", desc)
		}
		if e.Code == introspect.CodeInsufficientScope && e.Scope != "" {
			param("scope", scopeValue(e.Scope))
			scope = true
		}
		// RFC 9470 §3: what a new authentication must achieve, for the
		// client to pass on in its authorization request.
		if e.Code == introspect.CodeInsufficientUserAuthentication {
			if len(e.ACRValues) > 0 {
				param("acr_values", acrValue(e.ACRValues))
			}
			if e.MaxAge > 0 {
				param("max_age", strconv.FormatInt(introspect.MaxAgeSeconds(e.MaxAge), 10))
			}
		}
	}
	status := http.StatusUnauthorized
	if e != nil {
		status = statusFor(e)
	}
	if m := h.prm; m != nil && (status == http.StatusUnauthorized || status == http.StatusForbidden) {
		// RFC 9728 §5.1, on every 401 and 403: where the client finds
		// the authorization server, and (401) what scope to ask it for.
		if !scope && status == http.StatusUnauthorized && h.requiredScope != "" {
			param("scope", h.requiredScope)
		}
		param("resource_metadata", m.url)
	}
	return b.String()
}

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
	Scope       string `json:"scope,omitempty"`
	// RFC 9470 §3's challenge parameters, for clients that read the body.
	ACRValues string `json:"acr_values,omitempty"`
	MaxAge    int64  `json:"max_age,omitempty"`
}

func (h *Handler) logRejection(r *http.Request, e *introspect.Error, status int, fingerprint string) {
	level, msg := zapcore.InfoLevel, "request rejected"
	if status == http.StatusServiceUnavailable {
		// The gateway's own trouble with the authorization server is an
		// operator problem, visible with Caddy's default log level.
		level, msg = zapcore.ErrorLevel, "cannot validate token: "+e.Reason
		if e.Reason == introspect.ReasonServerErrorOnToken {
			// One token's trouble at a server that answers others: any
			// caller can cause it, so it must not page the operator.
			level = zapcore.WarnLevel
		}
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
	if errors.As(e.Err, &ase) {
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
		introspect.CodeInsufficientScope, introspect.CodeUnauthorizedClient,
		introspect.CodeInsufficientUserAuthentication:
		return string(c)
	case dpop.CodeInvalidProof, dpop.CodeUseNonce:
		return string(introspect.CodeInvalidToken)
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

// acrValue is RFC 9470 §3's acr_values: space-separated, each value already
// checked to be challenge-safe (introspect.CheckStepUp).
func acrValue(values []string) string { return strings.Join(values, " ") }

// quoteRealm renders the realm as an RFC 7230 quoted-string.
func quoteRealm(realm string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(realm) + `"`
}

// remoteIP is the client IP Caddy determined (trusted_proxies applied),
// else the connection's address.
func remoteIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	return r.RemoteAddr
}
