package introspect

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"
)

// DefaultMaxResponseBytes bounds every body the gateway reads from an
// authorization server: a hostile or broken server must not be able to make
// the gateway buffer megabytes per request.
const DefaultMaxResponseBytes = 256 << 10

// DefaultHTTPTimeout bounds every call to an authorization server when the
// operator sets no timeout.
const DefaultHTTPTimeout = 5 * time.Second

// errTooLarge is returned when a response exceeds its bound.
var errTooLarge = errors.New("response body exceeds the size limit")

// readBounded reads at most limit bytes and fails if there is more: a
// truncated JSON document must never be half-parsed.
func readBounded(r io.Reader, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

// isJSON reports whether a Content-Type is JSON (application/json or a +json
// type). Servers answering with HTML (a login page, a proxy error page) are a
// classic misconfiguration, and the log should say so.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || len(mt) > 5 && mt[len(mt)-5:] == "+json"
}

// describeBody names what came back without quoting it (bodies may echo
// secrets or tokens).
func describeBody(resp *http.Response, n int) string {
	return fmt.Sprintf("HTTP %d, Content-Type %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), n)
}
