package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tokengate/tokengate/internal/testas"
)

// End-to-end tests of the RFC 6750 §2.2 (form body) and §2.3 (query)
// transports through a real Caddy, with a real upstream behind
// reverse_proxy that records exactly what reached it: what the gateway
// checked must be what the upstream reads.

// upstreamSeen is one request as the upstream received it.
type upstreamSeen struct {
	method        string
	rawQuery      string
	body          string
	header        http.Header
	contentLength int64
}

// recordingUpstream answers 200 "upstream" (or X-Test-Status) and sets
// Cache-Control from the request's X-Test-Cache-Control, so a test can
// choose what the upstream says about caching.
type recordingUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []upstreamSeen
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		u.mu.Lock()
		u.seen = append(u.seen, upstreamSeen{method: r.Method, rawQuery: r.URL.RawQuery, body: string(body),
			header: r.Header.Clone(), contentLength: r.ContentLength})
		u.mu.Unlock()
		if cc := r.Header.Get("X-Test-Cache-Control"); cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		status := http.StatusOK
		if s, err := strconv.Atoi(r.Header.Get("X-Test-Status")); err == nil {
			status = s
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "upstream")
	}))
	t.Cleanup(u.Close)
	return u
}

// take returns what the upstream received since the last call.
func (u *recordingUpstream) take() []upstreamSeen {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.seen
	u.seen = nil
	return s
}

// proxySite guards reverse_proxy to upstream with bearer_auth against as.
func proxySite(as *testas.Server, upstream, extra string) string {
	return fmt.Sprintf(`	bearer_auth {
		issuer %s
		introspect {
			client_id %s
			client_secret %s
		}
%s
	}
	reverse_proxy %s`, as.Issuer(), testas.GatewayID, testas.GatewaySecret, extra, strings.TrimPrefix(upstream, "http://"))
}

const formType = "application/x-www-form-urlencoded"

// expectInvalidRequest checks an RFC 6750 invalid_request rejection.
func expectInvalidRequest(t *testing.T, r result, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d (body %q)", r.status, status, r.body)
	}
	if www := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(www, `Bearer realm="tokengate", error="invalid_request"`) {
		t.Errorf("WWW-Authenticate = %q", www)
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || body["error"] != "invalid_request" || body["error_description"] == "" {
		t.Errorf("body = %q, want an invalid_request JSON body", r.body)
	}
	if cc, ct := r.header.Get("Cache-Control"), r.header.Get("Content-Type"); cc != "no-store" || ct != "application/json" {
		t.Errorf("Cache-Control = %q, Content-Type = %q", cc, ct)
	}
}

// TestFormBodyIsReadAsTheUpstreamReadsItOrRefused: with allow_form_token, a
// second token must not reach the upstream in a form body the gateway did
// not parse (percent-encoded name, a body past the bound, a name a framework
// folds into access_token).
func TestFormBodyIsReadAsTheUpstreamReadsItOrRefused(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	up := newRecordingUpstream(t)
	tc := startCaddy(t, proxySite(as, up.URL, "\t\tallow_form_token\n\t\tstrip_authorization"))
	tok := as.Token(t, "svc-a", "read")
	bearer := "Bearer " + tok
	big := "pad=" + strings.Repeat("x", 70_000) + "&access_token=FORGED"

	refused := []struct {
		name, method, auth, body string
		status                   int
	}{
		{"percent-encoded name beside a header token", "POST", bearer, "access%5Ftoken=FORGED", 400},
		{"token past the 64 KiB bound beside a header token", "POST", bearer, big, 413},
		{"body past the bound without any token", "POST", bearer, "pad=" + strings.Repeat("x", 70_000), 413},
		{"PHP reads access.token as access_token", "POST", bearer, "access.token=FORGED", 400},
		{"PHP reads access+token as access_token", "POST", bearer, "access+token=FORGED", 400},
		{"PHP drops a leading space", "POST", bearer, "%20access_token=FORGED", 400},
		{"PHP reads an unclosed [ as _", "POST", bearer, "access[token=FORGED", 400},
		{"array form access_token[]", "POST", bearer, "access_token[]=FORGED", 400},
		{"hash form access_token[x]", "POST", bearer, "access_token%5Bx%5D=FORGED", 400},
		{"ASP.NET reads names case-insensitively", "POST", bearer, "ACCESS_TOKEN=FORGED", 400},
		{"NUL truncates the name in C-based parsers", "POST", bearer, "access_token%00x=FORGED", 400},
		{"repeated access_token", "POST", "", "access_token=" + url.QueryEscape(tok) + "&access_token=FORGED", 400},
		{"token in the header and the form", "POST", bearer, "access_token=FORGED", 400},
		{"form token on GET (RFC 6750 §2.2)", "GET", "", "access_token=" + url.QueryEscape(tok), 400},
		{"malformed encoding", "POST", bearer, "a=%zz&b=1", 400},
		{"semicolon separator", "POST", bearer, "a=1;access_token=FORGED", 400},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			r := tc.do(c.method, "/", map[string]string{"Authorization": c.auth, "Content-Type": formType}, []byte(c.body))
			if seen := up.take(); len(seen) != 0 {
				t.Errorf("the upstream received %d request(s), body %.80q", len(seen), strings.ReplaceAll(seen[0].body, url.QueryEscape(tok), "<token>"))
			}
			expectInvalidRequest(t, r, c.status)
		})
	}

	atBound := "pad=" + strings.Repeat("x", 64<<10-len("pad="))
	passed := []struct {
		name, method, contentType, body string
	}{
		{"form without a token passes byte for byte", "POST", formType, "z=1&a=%7E&flag&b=x+y&&c=%41"},
		{"form exactly at the bound", "POST", formType, atBound},
		{"GET with a form body without a token", "GET", formType, "q=1&q=2"},
		{"content type with parameters", "PUT", formType + "; charset=UTF-8", "x=%2B"},
		{"not a form: access_token is just text", "POST", "application/json", `{"access_token":"FORGED"}`},
	}
	for _, c := range passed {
		t.Run(c.name, func(t *testing.T) {
			r := tc.do(c.method, "/", map[string]string{"Authorization": bearer, "Content-Type": c.contentType}, []byte(c.body))
			seen := up.take()
			if r.status != 200 || r.body != "upstream" {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			if len(seen) != 1 {
				t.Fatalf("the upstream received %d requests", len(seen))
			}
			if seen[0].body != c.body {
				t.Errorf("upstream body differs: got %d bytes %.80q, want %d bytes %.80q", len(seen[0].body), seen[0].body, len(c.body), c.body)
			}
			if a := seen[0].header.Get("Authorization"); a != "" {
				t.Errorf("upstream got Authorization %q despite strip_authorization", a)
			}
		})
	}
}

// TestStripAuthorizationRemovesOnlyTheFormTokenPair: a token sent in the
// form must not reach the upstream either; everything else in the body
// arrives as sent, with a Content-Length that matches.
func TestStripAuthorizationRemovesOnlyTheFormTokenPair(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	up := newRecordingUpstream(t)
	tc := startCaddy(t, proxySite(as, up.URL, "\t\tallow_form_token\n\t\tstrip_authorization"))
	tok := url.QueryEscape(as.Token(t, "svc-a", "read"))
	cases := []struct{ body, want string }{
		{"z=1&a=%7E&access_token=" + tok + "&flag&b=x+y&a=2", "z=1&a=%7E&flag&b=x+y&a=2"},
		{"access%5Ftoken=" + tok + "&x=1", "x=1"},
		{"x=1&access_token=" + tok, "x=1"},
		{"access_token=" + tok, ""},
	}
	// Failure messages show <token>, not the token.
	redact := func(s string) string { return strings.ReplaceAll(s, tok, "<token>") }
	for _, c := range cases {
		r := tc.do("POST", "/", map[string]string{"Content-Type": formType}, []byte(c.body))
		seen := up.take()
		if r.status != 200 {
			t.Errorf("%q: got %d %q", redact(c.body), r.status, r.body)
			continue
		}
		if len(seen) != 1 {
			t.Fatalf("the upstream received %d requests", len(seen))
		}
		if seen[0].body != c.want {
			t.Errorf("upstream body = %q, want %q", redact(seen[0].body), c.want)
		}
		if seen[0].contentLength != int64(len(c.want)) {
			t.Errorf("upstream Content-Length = %d, want %d", seen[0].contentLength, len(c.want))
		}
	}
}

// TestStripAuthorizationRemovesOnlyTheQueryTokenPair: signed URLs break if
// the rest of the query is re-encoded or re-ordered, so only the
// access_token pair goes.
func TestStripAuthorizationRemovesOnlyTheQueryTokenPair(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	up := newRecordingUpstream(t)
	tc := startCaddy(t, proxySite(as, up.URL, "\t\tallow_query_token\n\t\tstrip_authorization"))
	tok := url.QueryEscape(as.Token(t, "svc-a", "read"))
	cases := []struct{ query, auth, want string }{
		{"z=1&a=2&flag&sig=ab%2Bcd&access_token=" + tok + "&a=3&t=%7E", "", "z=1&a=2&flag&sig=ab%2Bcd&a=3&t=%7E"},
		{"access%5Ftoken=" + tok + "&x=1", "", "x=1"},
		{"access_token=" + tok, "", ""},
		{"b=2&a=1&%7E&c=d+e", "Bearer " + as.Token(t, "svc-a", "read"), "b=2&a=1&%7E&c=d+e"},
	}
	redact := func(s string) string { return strings.ReplaceAll(s, tok, "<token>") }
	for _, c := range cases {
		r := tc.do("GET", "/p?"+c.query, map[string]string{"Authorization": c.auth}, nil)
		seen := up.take()
		if r.status != 200 {
			t.Errorf("?%s: got %d %q", redact(c.query), r.status, r.body)
			continue
		}
		if len(seen) != 1 {
			t.Fatalf("the upstream received %d requests", len(seen))
		}
		if seen[0].rawQuery != c.want {
			t.Errorf("upstream query = %q, want %q", redact(seen[0].rawQuery), c.want)
		}
	}
	// A name a framework folds into access_token is a second token.
	r := tc.do("GET", "/p?access.token=FORGED", map[string]string{"Authorization": "Bearer " + as.Token(t, "svc-a", "read")}, nil)
	expectInvalidRequest(t, r, 400)
}

// TestQueryTokenResponsesAreCacheControlPrivate: RFC 6750 §2.3 — a
// response to a request whose token was in the URI must not be stored by a
// shared cache, whatever the upstream said.
func TestQueryTokenResponsesAreCacheControlPrivate(t *testing.T) {
	t.Parallel()
	as := testas.Start(t)
	up := newRecordingUpstream(t)
	tc := startCaddy(t, proxySite(as, up.URL, "\t\tallow_query_token"))
	tok := as.Token(t, "svc-a", "read")
	cases := []struct {
		name, upstream, status, want string
	}{
		{"absent", "", "", "private"},
		{"public is replaced", "public, max-age=60", "", "private, max-age=60"},
		{"other directives are kept", "max-age=60, must-revalidate", "", "private, max-age=60, must-revalidate"},
		{"no-store is left alone", "no-store", "", "no-store"},
		{"private is left alone", "private, max-age=5", "", "private, max-age=5"},
		{"qualified private only hides fields", `private="Set-Cookie", max-age=60`, "", "private, max-age=60"},
		{"error responses too", "public, max-age=60", "404", "private, max-age=60"},
		{"redirects too", "", "302", "private"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := tc.do("GET", "/p?access_token="+url.QueryEscape(tok), map[string]string{
				"X-Test-Cache-Control": c.upstream, "X-Test-Status": c.status}, nil)
			up.take()
			if want := map[string]int{"": 200, "404": 404, "302": 302}[c.status]; r.status != want {
				t.Fatalf("status %d, want %d (body %q)", r.status, want, r.body)
			}
			if got := r.header.Values("Cache-Control"); len(got) != 1 || got[0] != c.want {
				t.Errorf("Cache-Control = %q, want %q", got, c.want)
			}
		})
	}
	t.Run("a header token leaves the upstream's caching alone", func(t *testing.T) {
		r := tc.do("GET", "/p", map[string]string{"Authorization": "Bearer " + tok, "X-Test-Cache-Control": "public, max-age=60"}, nil)
		up.take()
		if r.status != 200 || r.header.Get("Cache-Control") != "public, max-age=60" {
			t.Errorf("got %d Cache-Control %q", r.status, r.header.Get("Cache-Control"))
		}
	})
}
