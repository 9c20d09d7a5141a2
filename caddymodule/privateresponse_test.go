package caddymodule

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestMakePrivateKeepsResponsesOutOfSharedCaches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		upstream []string
		want     string
	}{
		{nil, "private"},
		{[]string{""}, "private"},
		{[]string{"max-age=60"}, "private, max-age=60"},
		{[]string{"max-age=60,must-revalidate"}, "private, max-age=60,must-revalidate"},
		{[]string{"public, max-age=60"}, "private, max-age=60"},
		{[]string{"max-age=60, PUBLIC"}, "max-age=60, private"},
		{[]string{"public", "max-age=5"}, "private, max-age=5"},
		{[]string{`private="Set-Cookie", max-age=60`}, "private, max-age=60"},
		{[]string{`private="Set-Cookie, X-A", public, s-maxage=9`}, "private, s-maxage=9"},
		{[]string{`no-cache="Set-Cookie, public", max-age=5`}, `private, no-cache="Set-Cookie, public", max-age=5`},
		{[]string{"no-store"}, "no-store"},
		{[]string{"public, No-Store"}, "public, No-Store"},
		{[]string{"private, max-age=5"}, "private, max-age=5"},
		{[]string{"max-age=5", "private"}, "max-age=5\x00private"},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, v := range tt.upstream {
			h.Add("Cache-Control", v)
		}
		makePrivate(h)
		if got := strings.Join(h.Values("Cache-Control"), "\x00"); got != tt.want {
			t.Errorf("%q: Cache-Control = %q, want %q", tt.upstream, got, tt.want)
		}
	}
}

// wireWriter records what reached the real writer: each WriteHeader with
// the Cache-Control it carried, flushes, and hijacks.
type wireWriter struct {
	header   http.Header
	statuses []string
	flushed  bool
	body     strings.Builder
}

var errHijackReached = errors.New("hijack reached the real writer")

func (w *wireWriter) Header() http.Header { return w.header }
func (w *wireWriter) WriteHeader(status int) {
	w.statuses = append(w.statuses, http.StatusText(status)+": "+w.header.Get("Cache-Control"))
}
func (w *wireWriter) Write(b []byte) (int, error) { return w.body.Write(b) }
func (w *wireWriter) Flush()                      { w.flushed = true }
func (w *wireWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, errHijackReached
}

func TestPrivateResponseMarksEveryWayAResponseStarts(t *testing.T) {
	t.Parallel()
	start := map[string]func(w http.ResponseWriter) error{
		"WriteHeader": func(w http.ResponseWriter) error { w.WriteHeader(http.StatusNotFound); return nil },
		"Write":       func(w http.ResponseWriter) error { _, err := w.Write([]byte("x")); return err },
		"ReadFrom":    func(w http.ResponseWriter) error { _, err := io.Copy(w, strings.NewReader("x")); return err },
		"ResponseController.Flush": func(w http.ResponseWriter) error {
			return http.NewResponseController(w).Flush()
		},
		"http.Flusher": func(w http.ResponseWriter) error { w.(http.Flusher).Flush(); return nil },
		"1xx first": func(w http.ResponseWriter) error {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusOK)
			w.WriteHeader(http.StatusTeapot) // superfluous: not passed on
			return nil
		},
	}
	want := map[string][]string{
		"WriteHeader": {"Not Found: private"},
		"1xx first":   {"Early Hints: public", "OK: private"},
	}
	for name, f := range start {
		real := &wireWriter{header: http.Header{"Cache-Control": {"public"}}}
		if err := f(newPrivateResponse(real)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		w, ok := want[name]
		if !ok {
			w = []string{"OK: private"}
		}
		if !slices.Equal(real.statuses, w) {
			t.Errorf("%s: the real writer got %q, want %q", name, real.statuses, w)
		}
		if strings.Contains(name, "Flush") && !real.flushed {
			t.Errorf("%s: not flushed", name)
		}
	}
	// Hijacking (WebSocket upgrades through reverse_proxy) still reaches
	// the real connection.
	if _, _, err := http.NewResponseController(newPrivateResponse(&wireWriter{header: http.Header{}})).Hijack(); !errors.Is(err, errHijackReached) {
		t.Errorf("Hijack: %v", err)
	}
}
