package introspect

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// DefaultMaxTokenLength bounds the Authorization header (and any other token
// transport). Real access tokens rarely exceed 4 KiB; anything beyond this is
// rejected before it costs a hash, a cache lookup or a call.
const DefaultMaxTokenLength = 8192

// maxFormBody bounds how much of a form body is read to find access_token
// (RFC 6750 §2.2) when that transport is enabled.
const maxFormBody = 64 << 10

// Extractor finds the bearer token in a request, following RFC 6750 §2.
// The zero value accepts only the Authorization header.
type Extractor struct {
	// AllowForm enables the form-encoded body parameter (RFC 6750 §2.2).
	AllowForm bool
	// AllowQuery enables the access_token URI query parameter (RFC 6750
	// §2.3), which leaks tokens into logs and caches; off by default.
	AllowQuery bool
	// MaxLength bounds the token transport; 0 means DefaultMaxTokenLength.
	MaxLength int
}

// Extract returns the token, or ("", nil) when the request carries no bearer
// credentials at all (RFC 6750 §3.1: the challenge then has no error code),
// or an invalid_request *Error for a malformed request.
func (x Extractor) Extract(r *http.Request) (string, *Error) {
	limit := x.MaxLength
	if limit <= 0 {
		limit = DefaultMaxTokenLength
	}
	var token string
	found := 0

	values := r.Header.Values("Authorization")
	if len(values) > 1 {
		return "", invalidRequest("multiple_authorization_headers", "more than one Authorization header")
	}
	if len(values) == 1 {
		if len(values[0]) > limit+len("Bearer ") {
			return "", invalidRequest("header_too_long", "the Authorization header is too long")
		}
		t, isBearer, err := ParseAuthorization(values[0])
		if err != nil {
			return "", err
		}
		if isBearer {
			token = t
			found++
		}
	}

	// Parse whenever the transport is on: a substring test would miss a
	// percent-encoded name (access%5Ftoken) and let one token through in
	// two places.
	if x.AllowQuery && r.URL != nil && r.URL.RawQuery != "" {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return "", invalidRequest("bad_query", "the query string is malformed")
		}
		if vs, ok := q["access_token"]; ok {
			if len(vs) != 1 {
				return "", invalidRequest("multiple_tokens", "access_token given more than once")
			}
			t, err := checkToken(vs[0], limit)
			if err != nil {
				return "", err
			}
			token = t
			found++
		}
	}

	if x.AllowForm && isFormBody(r) {
		t, ok, err := formToken(r, limit)
		if err != nil {
			return "", err
		}
		if ok {
			token = t
			found++
		}
	}

	if found > 1 {
		// RFC 6750 §2: clients MUST NOT use more than one method per request.
		return "", invalidRequest("multiple_tokens", "the token was sent in more than one way")
	}
	return token, nil
}

// ParseAuthorization parses one Authorization header value. It reports
// isBearer=false (and no error) for other schemes such as Basic, which are not
// bearer credentials at all.
func ParseAuthorization(v string) (token string, isBearer bool, err *Error) {
	const scheme = "bearer"
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false, nil
	}
	rest := v[len(scheme):]
	if rest == "" {
		return "", true, invalidRequest("empty_token", "the Bearer scheme carries no token")
	}
	if rest[0] != ' ' {
		// "Bearerx..." is a different (unknown) scheme, not ours.
		if rest[0] == '\t' {
			return "", true, invalidRequest("bad_syntax", "the Bearer scheme must be followed by a single space")
		}
		return "", false, nil
	}
	// RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token. Extra spaces
	// after the scheme are tolerated; anything after the token is not.
	rest = strings.TrimLeft(rest, " ")
	if rest == "" {
		return "", true, invalidRequest("empty_token", "the Bearer scheme carries no token")
	}
	t, e := checkToken(rest, len(rest))
	return t, true, e
}

// checkToken enforces the b64token grammar of RFC 6750 §2.1:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func checkToken(t string, limit int) (string, *Error) {
	if t == "" {
		return "", invalidRequest("empty_token", "the token is empty")
	}
	if len(t) > limit {
		return "", invalidRequest("token_too_long", "the token is too long")
	}
	i := 0
	for ; i < len(t); i++ {
		c := t[i]
		if !isB64TokenChar(c) {
			break
		}
	}
	if i == 0 {
		return "", invalidRequest("bad_syntax", "the token is not a valid b64token")
	}
	for ; i < len(t); i++ {
		if t[i] != '=' {
			if t[i] == ' ' || t[i] == '\t' {
				return "", invalidRequest("bad_syntax", "the Authorization header carries more than one token")
			}
			return "", invalidRequest("bad_syntax", "the token contains characters outside the b64token set")
		}
	}
	return t, nil
}

func isB64TokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}

func isFormBody(r *http.Request) bool {
	if r.Method == http.MethodGet || r.Body == nil || r.Body == http.NoBody {
		return false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// formToken reads a bounded form body, looks for access_token, and puts the
// body back so the upstream still receives it unchanged.
func formToken(r *http.Request, limit int) (string, bool, *Error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxFormBody+1))
	if err != nil {
		return "", false, invalidRequest("bad_body", "the request body could not be read")
	}
	if len(body) > maxFormBody {
		// Restore what was read plus the unread rest for the upstream.
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		return "", false, nil
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if !bytes.Contains(body, []byte("access_token")) {
		return "", false, nil
	}
	form, perr := url.ParseQuery(string(body))
	if perr != nil {
		return "", false, invalidRequest("bad_body", "the form body is malformed")
	}
	vs, ok := form["access_token"]
	if !ok {
		return "", false, nil
	}
	if len(vs) != 1 {
		return "", false, invalidRequest("multiple_tokens", "access_token given more than once")
	}
	t, e := checkToken(vs[0], limit)
	return t, e == nil, e
}
