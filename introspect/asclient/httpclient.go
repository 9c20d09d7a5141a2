package asclient

import (
	"net/http"
	"time"
)

// DefaultHTTPTimeout bounds every call to an authorization server when the
// operator sets no timeout.
const DefaultHTTPTimeout = 5 * time.Second

// DefaultMaxResponseBytes bounds every body the gateway reads from an
// authorization server: a hostile or broken server must not be able to make
// the gateway buffer megabytes per request.
const DefaultMaxResponseBytes = 256 << 10

// NewHTTPClient returns the client used for every call to an authorization
// server: bounded in time, no redirects, no cookies.
func NewHTTPClient(timeout time.Duration) *http.Client {
	timeout = callTimeout(timeout)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.ResponseHeaderTimeout = timeout
	return &http.Client{
		Timeout:   timeout,
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// callTimeout is timeout, or DefaultHTTPTimeout when it is not set.
func callTimeout(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		return DefaultHTTPTimeout
	}
	return timeout
}

// responseLimit is limit, or DefaultMaxResponseBytes when it is not set.
func responseLimit(limit int64) int64 {
	if limit <= 0 {
		return DefaultMaxResponseBytes
	}
	return limit
}
