package introspect

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tokengate/tokengate/introspect/claims"
	"github.com/tokengate/tokengate/introspect/internal/httpbody"
)

// DefaultMaxTokenLength bounds the Authorization header (and any other token
// transport). Real access tokens rarely exceed 4 KiB; anything beyond this is
// rejected before it costs a hash, a cache lookup or a call.
const DefaultMaxTokenLength = 8192

// MaxFormBody bounds the form body the Extractor reads to find access_token
// (RFC 6750 §2.2) when that transport is enabled. A form is parsed whole or
// the request is refused (413): passing on a body the gateway did not read
// would let the upstream find a second token past the bound.
const MaxFormBody = 64 << 10

// Transport says where a request carried its token (RFC 6750 §2).
type Transport uint8

// The token transports.
const (
	// TransportNone: no bearer credentials at all.
	TransportNone Transport = iota
	// TransportHeader: the Authorization request header (§2.1).
	TransportHeader
	// TransportForm: an access_token form-encoded body parameter (§2.2).
	TransportForm
	// TransportQuery: an access_token URI query parameter (§2.3).
	TransportQuery
	// TransportDPoP: the Authorization header with the DPoP scheme (RFC
	// 9449 §7.1); the request must also carry a DPoP proof.
	TransportDPoP
)

func (t Transport) String() string {
	switch t {
	case TransportHeader:
		return "header"
	case TransportForm:
		return "form"
	case TransportQuery:
		return "query"
	case TransportDPoP:
		return "dpop"
	}
	return "none"
}

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

// Extract returns the token and where it came from, or ("", TransportNone,
// nil) when the request carries no bearer credentials at all (RFC 6750 §3.1:
// the challenge then has no error code), or an invalid_request *Error for a
// malformed request. With AllowForm it reads a form body (any method: an
// upstream may parse a GET body too) and puts the same bytes back.
func (x Extractor) Extract(r *http.Request) (string, Transport, *Error) {
	limit := x.MaxLength
	if limit <= 0 {
		limit = DefaultMaxTokenLength
	}
	var token string
	from := TransportNone
	found := 0

	values := r.Header.Values("Authorization")
	if len(values) > 1 {
		return "", TransportNone, claims.InvalidRequest("multiple_authorization_headers", "more than one Authorization header")
	}
	if len(values) == 1 {
		if len(values[0]) > limit+len("Bearer ") {
			return "", TransportNone, claims.InvalidRequest("header_too_long", "the Authorization header is too long")
		}
		t, isBearer, err := ParseAuthorization(values[0])
		if err != nil {
			return "", TransportNone, err
		}
		if isBearer {
			token, from = t, TransportHeader
			found++
		} else if t, isDPoP, err := parseCredentials(values[0], "dpop"); isDPoP {
			if err != nil {
				return "", TransportNone, err
			}
			token, from = t, TransportDPoP
			found++
		}
	}

	// Parse whenever the transport is on: a substring test would miss a
	// percent-encoded name (access%5Ftoken) and let one token through in
	// two places.
	if x.AllowQuery && r.URL != nil && r.URL.RawQuery != "" {
		t, ok, err := tokenParam(r.URL.RawQuery, limit, TransportQuery)
		if err != nil {
			return "", TransportNone, err
		}
		if ok {
			token, from = t, TransportQuery
			found++
		}
	}

	if x.AllowForm && isMultipartBody(r) {
		if err := multipartHasNoToken(r); err != nil {
			return "", TransportNone, err
		}
	}
	if x.AllowForm && isFormBody(r) {
		t, ok, err := formToken(r, limit)
		if err != nil {
			return "", TransportNone, err
		}
		if ok {
			token, from = t, TransportForm
			found++
		}
	}

	if found > 1 {
		// RFC 6750 §2: clients MUST NOT use more than one method per request.
		return "", TransportNone, claims.InvalidRequest("multiple_tokens", "the token was sent in more than one way")
	}
	return token, from, nil
}

// ParseAuthorization parses one Authorization header value. It reports
// isBearer=false (and no error) for other schemes such as Basic, which are not
// bearer credentials at all.
func ParseAuthorization(v string) (token string, isBearer bool, err *Error) {
	return parseCredentials(v, "bearer")
}

// parseCredentials parses v as `<scheme> 1*SP b64token` (RFC 6750 §2.1;
// RFC 9449 §7.1 uses the same syntax for DPoP). scheme is lower case and
// matched case-insensitively (RFC 9110 §11.1). matched=false (and no error)
// for any other scheme. Allocation-free unless it fails.
func parseCredentials(v, scheme string) (token string, matched bool, err *Error) {
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false, nil
	}
	rest := v[len(scheme):]
	if rest == "" {
		return "", true, emptyCredentials(scheme)
	}
	if rest[0] != ' ' {
		// "Bearerx..." is a different (unknown) scheme, not ours.
		if rest[0] == '\t' {
			return "", true, claims.InvalidRequest("bad_syntax", "the "+schemeName(scheme)+" scheme must be followed by a single space")
		}
		return "", false, nil
	}
	// RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token. Extra spaces
	// after the scheme are tolerated; anything after the token is not.
	rest = strings.TrimLeft(rest, " ")
	if rest == "" {
		return "", true, emptyCredentials(scheme)
	}
	t, e := claims.CheckB64Token(rest, len(rest))
	return t, true, e
}

func schemeName(scheme string) string {
	if scheme == "dpop" {
		return "DPoP"
	}
	return "Bearer"
}

func emptyCredentials(scheme string) *Error {
	return claims.InvalidRequest("empty_token", "the "+schemeName(scheme)+" scheme carries no token")
}

// isFormBody reports a form-encoded body whatever the method. The media type
// is compared without parsing its parameters: an upstream that reads a form
// despite a malformed parameter must not get one the gateway skipped.
func isFormBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	for _, ct := range r.Header.Values("Content-Type") {
		mt, _, _ := strings.Cut(ct, ";")
		if strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded") {
			return true
		}
	}
	return false
}

// isMultipartBody reports a multipart/form-data body, which PHP, Rails and
// qs-based upstreams read into the same parameters as a urlencoded form.
func isMultipartBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	for _, ct := range r.Header.Values("Content-Type") {
		mt, _, _ := strings.Cut(ct, ";")
		if strings.EqualFold(strings.TrimSpace(mt), "multipart/form-data") {
			return true
		}
	}
	return false
}

// multipartHasNoToken refuses a multipart/form-data body with a part named
// access_token (or a name an upstream folds into it): RFC 6750 §2.2 allows
// the token only in a urlencoded body, and an upstream that reads multipart
// forms would otherwise find a second token the gateway never checked. The
// body is read within MaxFormBody (413 beyond: a gateway that accepts form
// tokens cannot vouch for a body it did not read) and put back unchanged.
func multipartHasNoToken(r *http.Request) *Error {
	if r.ContentLength > MaxFormBody {
		return bodyTooLarge()
	}
	body, err := httpbody.Read(r.Body, MaxFormBody)
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, httpbody.ErrTooLarge) || errors.As(err, &mbe):
		return bodyTooLarge()
	case err != nil:
		return claims.InvalidRequest("bad_body", "the request body could not be read")
	}
	_ = r.Body.Close()
	r.Body = newFormBody(string(body))
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return claims.InvalidRequest("bad_body", "the multipart body has no usable boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return claims.InvalidRequest("bad_body", "the multipart body is malformed")
		}
		name := part.FormName()
		_ = part.Close()
		if name == "access_token" || foldsToAccessToken(name) {
			return claims.InvalidRequest("multipart_token", "access_token is accepted only in an application/x-www-form-urlencoded body")
		}
	}
}

// formToken reads the whole form body within MaxFormBody, puts the same
// bytes back for the upstream, and finds access_token in it.
func formToken(r *http.Request, limit int) (string, bool, *Error) {
	if r.ContentLength > MaxFormBody {
		return "", false, bodyTooLarge()
	}
	body, err := httpbody.Read(r.Body, MaxFormBody)
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, httpbody.ErrTooLarge) || errors.As(err, &mbe):
		return "", false, bodyTooLarge()
	case err != nil:
		return "", false, claims.InvalidRequest("bad_body", "the request body could not be read")
	}
	_ = r.Body.Close()
	raw := string(body)
	r.Body = newFormBody(raw)
	t, ok, e := tokenParam(raw, limit, TransportForm)
	if e != nil {
		return "", false, e
	}
	if ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		// RFC 6750 §2.2: the form parameter only with a method whose body
		// has defined semantics; "the GET method MUST NOT be used".
		return "", false, claims.InvalidRequest("form_token_on_get", "a token in the request body cannot be used with GET")
	}
	return t, ok, nil
}

func bodyTooLarge() *Error {
	return &Error{Code: CodeInvalidRequest, TooLarge: true, Reason: "body_too_large",
		Description: "the form body is larger than " + strconv.Itoa(MaxFormBody>>10) + " KiB"}
}

// tokenParam finds access_token in an application/x-www-form-urlencoded
// string (a query or a form body) the way upstream frameworks will read it:
// names are percent-decoded, and a name some framework folds into
// access_token is refused rather than left for the upstream to find.
func tokenParam(s string, limit int, in Transport) (string, bool, *Error) {
	malformed := func() (string, bool, *Error) {
		if in == TransportQuery {
			return "", false, claims.InvalidRequest("bad_query", "the query string is malformed")
		}
		return "", false, claims.InvalidRequest("bad_body", "the form body is malformed")
	}
	var token string
	found := false
	for s != "" {
		var pair string
		pair, s, _ = strings.Cut(s, "&")
		if pair == "" {
			continue
		}
		if strings.IndexByte(pair, ';') >= 0 {
			// Older Rack and Python parsers also split on ";": what is
			// one value here can be an access_token pair to them.
			return malformed()
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil || !wellEscaped(rawValue) {
			return malformed()
		}
		if name != "access_token" {
			if foldsToAccessToken(name) {
				return "", false, claims.InvalidRequest("token_name_variant", "a parameter name is read as access_token by some servers")
			}
			continue
		}
		if found {
			return "", false, claims.InvalidRequest("multiple_tokens", "access_token given more than once")
		}
		value, _ := url.QueryUnescape(rawValue)
		t, e := claims.CheckB64Token(value, limit)
		if e != nil {
			return "", false, e
		}
		token, found = t, true
	}
	return token, found, nil
}

// wellEscaped reports whether every "%" starts a %XX escape, the only way
// url.QueryUnescape fails, without decoding.
func wellEscaped(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// foldsToAccessToken reports whether a decoded parameter name other than
// access_token is still read as access_token by a common upstream: PHP
// skips leading spaces and turns " ", "." and an unclosed "[" into "_";
// PHP, Rack and qs read access_token[] and access_token[x] as an array or
// hash named access_token; C-based parsers stop at NUL; ASP.NET compares
// names case-insensitively.
func foldsToAccessToken(name string) bool {
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	name = strings.TrimLeft(name, " ")
	if i := strings.IndexByte(name, '['); i >= 0 {
		if strings.IndexByte(name[i:], ']') >= 0 {
			name = name[:i]
		} else {
			name = name[:i] + "_" + name[i+1:]
		}
	}
	name = strings.Map(func(r rune) rune {
		if r == ' ' || r == '.' {
			return '_'
		}
		return r
	}, name)
	return strings.EqualFold(name, "access_token")
}

// isTokenPair reports whether one name=value pair is access_token, its name
// percent-decoded as every upstream decodes it.
func isTokenPair(pair string) bool {
	rawName, _, _ := strings.Cut(pair, "=")
	name, err := url.QueryUnescape(rawName)
	return err == nil && name == "access_token"
}

// RemoveTokenParam returns s, an application/x-www-form-urlencoded string
// (a query or a form body), without its access_token pairs and the "&" that
// joined each to the rest. Every other byte stays as sent, order included:
// re-encoding the rest would break signatures computed over it (signed
// URLs, signed webhook bodies).
func RemoveTokenParam(s string) string {
	var b strings.Builder
	removed, kept := false, 0
	for rest, more := s, true; more; {
		var pair string
		pair, rest, more = strings.Cut(rest, "&")
		if isTokenPair(pair) {
			removed = true
			continue
		}
		if kept > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
		kept++
	}
	if !removed {
		return s
	}
	return b.String()
}

// formBody is a form body the Extractor read and put back: the upstream
// reads the same bytes, and RemoveToken edits them without reading again.
type formBody struct {
	*strings.Reader
	raw string
}

func newFormBody(raw string) *formBody { return &formBody{Reader: strings.NewReader(raw), raw: raw} }

func (*formBody) Close() error { return nil }

// RemoveToken takes the token Extract found in the query or the form body
// out of r (strip_authorization), so that the upstream never receives the
// caller's token; the Authorization header is the caller's to delete. Only
// the access_token pair goes (RemoveTokenParam), and a shorter body gets its
// Content-Length.
func RemoveToken(r *http.Request, from Transport) error {
	switch from {
	case TransportQuery:
		r.URL.RawQuery = RemoveTokenParam(r.URL.RawQuery)
	case TransportForm:
		fb, ok := r.Body.(*formBody)
		if !ok || fb.Len() != len(fb.raw) {
			// Fail closed: never forward a body we cannot vouch for.
			return errors.New("introspect: the form body is no longer the one the token was read from")
		}
		rest := RemoveTokenParam(fb.raw)
		if rest == "" {
			r.Body = http.NoBody
		} else {
			r.Body = newFormBody(rest)
		}
		r.ContentLength = int64(len(rest))
		r.TransferEncoding = nil
		// FastCGI upstreams read CONTENT_LENGTH from the header.
		r.Header.Set("Content-Length", strconv.Itoa(len(rest)))
	}
	return nil
}
