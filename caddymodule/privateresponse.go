package caddymodule

import (
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// privateResponse marks every final response Cache-Control: private when it
// is sent, for requests whose token came in the query: RFC 6750 §2.3 wants
// such responses kept out of shared caches, and the URI is a cache key that
// would otherwise hand one caller's response to the next. It embeds
// caddyhttp.ResponseWriterWrapper, so Unwrap (and through it
// http.ResponseController's Hijack and deadlines) and Push still reach the
// real writer.
type privateResponse struct {
	*caddyhttp.ResponseWriterWrapper
	wroteHeader bool
}

func newPrivateResponse(w http.ResponseWriter) *privateResponse {
	return &privateResponse{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
}

func (p *privateResponse) WriteHeader(status int) {
	if p.wroteHeader {
		return
	}
	// 1xx responses are not final: the headers of the real one come later.
	if status >= 200 {
		p.wroteHeader = true
		makePrivate(p.Header())
	}
	p.ResponseWriterWrapper.WriteHeader(status)
}

func (p *privateResponse) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return p.ResponseWriterWrapper.Write(b)
}

// ReadFrom and FlushError would otherwise reach the real writer (promoted,
// or through Unwrap) and send an implicit 200 without the header.
func (p *privateResponse) ReadFrom(r io.Reader) (int64, error) {
	p.WriteHeader(http.StatusOK)
	return p.ResponseWriterWrapper.ReadFrom(r)
}

func (p *privateResponse) FlushError() error {
	p.WriteHeader(http.StatusOK)
	return http.NewResponseController(p.ResponseWriterWrapper.ResponseWriter).Flush()
}

// Flush makes the wrapper an http.Flusher for code that asserts it
// directly rather than using http.ResponseController.
func (p *privateResponse) Flush() { _ = p.FlushError() }

// makePrivate keeps shared caches from storing a response (RFC 9111
// §5.2.2.7): no-store or an unqualified private already do, and are left as
// they are; public, or a private="field" that hides only those fields, is
// replaced by private in place; otherwise private goes in front.
func makePrivate(h http.Header) {
	values := h.Values("Cache-Control")
	var dirs []string
	for _, v := range values {
		for _, d := range splitDirectives(v) {
			if d = strings.TrimSpace(d); d != "" {
				dirs = append(dirs, d)
			}
		}
	}
	if len(dirs) == 0 {
		h.Set("Cache-Control", "private")
		return
	}
	replace := false
	for _, d := range dirs {
		name, _, qualified := strings.Cut(d, "=")
		name = strings.TrimSpace(name)
		switch {
		case strings.EqualFold(name, "no-store"), strings.EqualFold(name, "private") && !qualified:
			return
		case strings.EqualFold(name, "public"), strings.EqualFold(name, "private"):
			replace = true
		}
	}
	if !replace {
		// Prepend without re-serialising the upstream's own text.
		h.Set("Cache-Control", "private, "+strings.Join(values, ", "))
		return
	}
	out := make([]string, 0, len(dirs))
	replaced := false
	for _, d := range dirs {
		name, _, _ := strings.Cut(d, "=")
		if name = strings.TrimSpace(name); strings.EqualFold(name, "public") || strings.EqualFold(name, "private") {
			if replaced {
				continue
			}
			d, replaced = "private", true
		}
		out = append(out, d)
	}
	h.Set("Cache-Control", strings.Join(out, ", "))
}

// splitDirectives splits a Cache-Control value at the commas outside
// quoted strings (private="a, b" is one directive).
func splitDirectives(v string) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == ',':
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}
