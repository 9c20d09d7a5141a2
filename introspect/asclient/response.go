package asclient

import (
	"fmt"
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

// responseLimit is limit, or DefaultMaxResponseBytes when it is not set.
func responseLimit(limit int64) int64 {
	if limit <= 0 {
		return DefaultMaxResponseBytes
	}
	return limit
}

// describeBody names what came back without quoting it (bodies may echo
// secrets or tokens).
func describeBody(resp *http.Response, n int) string {
	return fmt.Sprintf("HTTP %d, Content-Type %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), n)
}
