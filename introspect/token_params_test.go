package introspect

import (
	"errors"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func formRequest(method, body string) *http.Request {
	r := httptest.NewRequest(method, "/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

// TestExtractorReadsFormsAsUpstreamsDo: one token per request as the
// upstream will see it (the upstream must never find a second token the
// gateway did not check), or invalid_request.
func TestExtractorReadsFormsAsUpstreamsDo(t *testing.T) {
	tests := []struct {
		name, method, auth, body string
		token                    string
		from                     Transport
		reason                   string
	}{
		{"plain", "POST", "", "x=1&access_token=abc", "abc", TransportForm, ""},
		{"percent-encoded name", "POST", "", "access%5Ftoken=abc", "abc", TransportForm, ""},
		{"percent-encoded value", "POST", "", "access_token=a%2Bb%2F%3D", "a+b/=", TransportForm, ""},
		{"no token", "POST", "Bearer h", "x=1", "h", TransportHeader, ""},
		{"GET without a token", "GET", "Bearer h", "x=1", "h", TransportHeader, ""},
		{"PUT", "PUT", "", "access_token=abc", "abc", TransportForm, ""},
		{"percent-encoded name beside a header token", "POST", "Bearer h", "access%5Ftoken=abc", "", TransportNone, "multiple_tokens"},
		{"header and form", "POST", "Bearer h", "access_token=abc", "", TransportNone, "multiple_tokens"},
		{"repeated", "POST", "", "access_token=a&access_token=b", "", TransportNone, "multiple_tokens"},
		{"GET", "GET", "", "access_token=abc", "", TransportNone, "form_token_on_get"},
		{"HEAD", "HEAD", "", "access_token=abc", "", TransportNone, "form_token_on_get"},
		{"dot", "POST", "", "access.token=abc", "", TransportNone, "token_name_variant"},
		{"plus", "POST", "", "access+token=abc", "", TransportNone, "token_name_variant"},
		{"leading space", "POST", "", "+access_token=abc", "", TransportNone, "token_name_variant"},
		{"unclosed bracket", "POST", "", "access[token=abc", "", TransportNone, "token_name_variant"},
		{"array", "POST", "", "access_token[]=abc", "", TransportNone, "token_name_variant"},
		{"hash", "POST", "", "access_token%5Bx%5D=abc", "", TransportNone, "token_name_variant"},
		{"upper case", "POST", "", "Access_Token=abc", "", TransportNone, "token_name_variant"},
		{"Unicode case folding", "POST", "", "acce%C5%BF%C5%BF_token=abc", "", TransportNone, "token_name_variant"},
		{"NUL", "POST", "", "access_token%00.x=abc", "", TransportNone, "token_name_variant"},
		{"variant on GET", "GET", "Bearer h", "access.token=abc", "", TransportNone, "token_name_variant"},
		{"bad escape in a name", "POST", "Bearer h", "a%zz=1", "", TransportNone, "bad_body"},
		{"bad escape in a value", "POST", "Bearer h", "a=%4", "", TransportNone, "bad_body"},
		{"semicolon", "POST", "Bearer h", "a=1;access_token=abc", "", TransportNone, "bad_body"},
		{"empty token", "POST", "", "access_token=", "", TransportNone, "empty_token"},
		{"not a b64token", "POST", "", "access_token=a%20b", "", TransportNone, "bad_syntax"},
		{"similar names are not the token", "POST", "Bearer h", "access_tokens=1&xaccess_token=2&access-token=3&access_token_=4", "h", TransportHeader, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := formRequest(tt.method, tt.body)
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			tok, from, err := (Extractor{AllowForm: true}).Extract(r)
			reason := ""
			if err != nil {
				reason = err.Reason
				if err.Code != CodeInvalidRequest || err.TooLarge {
					t.Errorf("error %+v, want a plain invalid_request", err)
				}
			}
			if tok != tt.token || from != tt.from || reason != tt.reason {
				t.Errorf("got %q %v %q, want %q %v %q", tok, from, reason, tt.token, tt.from, tt.reason)
			}
			if err == nil {
				if b, _ := io.ReadAll(r.Body); string(b) != tt.body {
					t.Errorf("body put back as %q, want %q", b, tt.body)
				}
			}
		})
	}
}

func TestExtractorReadsQueriesWithTheSameRules(t *testing.T) {
	for q, reason := range map[string]string{
		"access.token=abc":                "token_name_variant",
		"access_token[]=abc":              "token_name_variant",
		"a=%zz":                           "bad_query",
		"a=1;b=2":                         "bad_query",
		"access_token=a&access%5Ftoken=b": "multiple_tokens",
	} {
		r := httptest.NewRequest("GET", "/?"+q, nil)
		if _, _, err := (Extractor{AllowQuery: true}).Extract(r); err == nil || err.Reason != reason {
			t.Errorf("?%s: %v, want %s", q, err, reason)
		}
	}
}

func TestExtractorRefusesFormBodiesOverTheBound(t *testing.T) {
	at := "x=" + strings.Repeat("a", MaxFormBody-2)
	r := formRequest("POST", at)
	r.Header.Set("Authorization", "Bearer h")
	if tok, _, err := (Extractor{AllowForm: true}).Extract(r); err != nil || tok != "h" {
		t.Fatalf("a body of exactly MaxFormBody: %q %v", tok, err)
	}
	if b, _ := io.ReadAll(r.Body); string(b) != at {
		t.Errorf("body not put back byte for byte (%d bytes)", len(b))
	}
	over := func() *http.Request {
		r := formRequest("POST", at+"&access_token=forged")
		r.Header.Set("Authorization", "Bearer h")
		return r
	}
	r = over()
	chunked := over()
	chunked.ContentLength = -1 // no Content-Length: the read itself must stop
	limited := over()
	limited.Body = http.MaxBytesReader(nil, limited.Body, 100) // Caddy's request_body max_size
	for name, r := range map[string]*http.Request{"Content-Length": r, "chunked": chunked, "request_body max_size": limited} {
		_, _, err := (Extractor{AllowForm: true}).Extract(r)
		if err == nil || err.Code != CodeInvalidRequest || !err.TooLarge || err.Reason != "body_too_large" {
			t.Errorf("%s: %+v, want a TooLarge invalid_request", name, err)
		}
	}
	broken := formRequest("POST", "")
	broken.Body = io.NopCloser(iotest.ErrReader(errors.New("connection reset")))
	if _, _, err := (Extractor{AllowForm: true}).Extract(broken); err == nil || err.Reason != "bad_body" || err.TooLarge {
		t.Errorf("unreadable body: %+v", err)
	}
}

func TestRemoveTokenParam(t *testing.T) {
	for in, want := range map[string]string{
		"z=1&a=2&flag&sig=ab%2Bcd&access_token=T&a=3&t=%7E": "z=1&a=2&flag&sig=ab%2Bcd&a=3&t=%7E",
		"access_token=T":                  "",
		"access_token=T&x=1":              "x=1",
		"x=1&access_token=T":              "x=1",
		"access%5Ftoken=T&x=1":            "x=1",
		"access_token&x=1":                "x=1",
		"x=1&&access_token=T&&y":          "x=1&&&y",
		"access_token=T&access_token=U&x": "x",
		"x=%41&access_token.y=T&b=c+d":    "x=%41&access_token.y=T&b=c+d",
		"a=%zz&access_token=T":            "a=%zz",
		"access%zztoken=T":                "access%zztoken=T",
		"":                                "",
		"&":                               "&",
	} {
		if got := RemoveTokenParam(in); got != want {
			t.Errorf("RemoveTokenParam(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRemoveTokenTakesOnlyTheTokenOutOfTheRequest(t *testing.T) {
	r := formRequest("POST", "b=%7E&access_token=abc&a=1")
	_, from, err := (Extractor{AllowForm: true}).Extract(r)
	if err != nil || from != TransportForm {
		t.Fatal(from, err)
	}
	if err := RemoveToken(r, from); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(r.Body); string(b) != "b=%7E&a=1" || r.ContentLength != 9 || r.Header.Get("Content-Length") != "9" {
		t.Errorf("body %q, ContentLength %d, header %q", b, r.ContentLength, r.Header.Get("Content-Length"))
	}

	r = formRequest("POST", "access_token=abc")
	_, from, _ = (Extractor{AllowForm: true}).Extract(r)
	if err := RemoveToken(r, from); err != nil || r.Body != http.NoBody || r.ContentLength != 0 {
		t.Errorf("only the token: err %v, body %v, ContentLength %d", err, r.Body, r.ContentLength)
	}

	r = httptest.NewRequest("GET", "/?b=2&access_token=abc&a=1", nil)
	_, from, _ = (Extractor{AllowQuery: true}).Extract(r)
	if err := RemoveToken(r, from); err != nil || r.URL.RawQuery != "b=2&a=1" {
		t.Errorf("query: %v %q", err, r.URL.RawQuery)
	}

	// A body someone replaced or started reading since Extract is not
	// forwarded: it may still hold the token.
	r = formRequest("POST", "access_token=abc&a=1")
	_, from, _ = (Extractor{AllowForm: true}).Extract(r)
	_, _ = r.Body.Read(make([]byte, 1))
	if err := RemoveToken(r, from); err == nil {
		t.Error("a partly read body was accepted")
	}
	r.Body = io.NopCloser(strings.NewReader("access_token=abc"))
	if err := RemoveToken(r, from); err == nil {
		t.Error("a body Extract did not read was accepted")
	}
}

func FuzzRemoveTokenParam(f *testing.F) {
	for _, s := range []string{"z=1&a=2&flag&sig=ab%2Bcd&access_token=T&a=3&t=%7E", "access_token=T", "access%5Ftoken=T&x",
		"&&access_token&", "a=%zz&access_token=T", "a=1;access_token=T", "access_token[]=T", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := RemoveTokenParam(s)
		// Exactly the pairs that are not access_token, in order, as sent.
		var kept []string
		for _, p := range strings.Split(s, "&") {
			if !isTokenPair(p) {
				kept = append(kept, p)
			}
		}
		if want := strings.Join(kept, "&"); out != want {
			t.Fatalf("RemoveTokenParam(%q) = %q, want %q", s, out, want)
		}
		if len(kept) == strings.Count(s, "&")+1 && out != s {
			t.Fatalf("nothing to remove, yet %q became %q", s, out)
		}
		if again := RemoveTokenParam(out); again != out {
			t.Fatalf("not idempotent: %q then %q", out, again)
		}
		// A request the Extractor accepted reaches the upstream without
		// any token after stripping.
		if _, found, err := tokenParam(s, DefaultMaxTokenLength, TransportForm); err == nil && found {
			if _, again, err := tokenParam(out, DefaultMaxTokenLength, TransportForm); err != nil || again {
				t.Fatalf("%q stripped to %q still reads as a token (%v)", s, out, err)
			}
		}
		// What net/url reads is the same, minus access_token.
		if q, err := url.ParseQuery(s); err == nil {
			q2, err := url.ParseQuery(out)
			if err != nil {
				t.Fatalf("%q parses but %q does not: %v", s, out, err)
			}
			delete(q, "access_token")
			if !maps.EqualFunc(q, q2, slices.Equal) {
				t.Fatalf("%q reads as %v, %q as %v", s, q, out, q2)
			}
		}
	})
}

// A multipart/form-data body is read by PHP, Rails and qs-based upstreams
// into the same parameters as a urlencoded form: with form tokens on, a
// part named access_token (or a name folded into it) is refused, a body over
// the bound is 413, and any other multipart body reaches the upstream
// unchanged.
func TestExtractorRefusesATokenInAMultipartBody(t *testing.T) {
	multipartBody := func(name string, extra int) (string, string) {
		var b strings.Builder
		w := multipart.NewWriter(&b)
		_ = w.WriteField("note", strings.Repeat("x", extra))
		if name != "" {
			_ = w.WriteField(name, "FORGED")
		}
		_ = w.Close()
		return b.String(), w.FormDataContentType()
	}
	x := Extractor{AllowForm: true}
	for _, c := range []struct {
		name, part string
		extra      int
		wantReason string
		tooLarge   bool
	}{
		{"a part named access_token", "access_token", 0, "multipart_token", false},
		{"a name PHP folds into access_token", "access.token", 0, "multipart_token", false},
		{"an array of access_token", "access_token[]", 0, "multipart_token", false},
		{"no token part", "", 0, "", false},
		{"over the bound", "", MaxFormBody, "body_too_large", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			body, ct := multipartBody(c.part, c.extra)
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
			r.Header.Set("Content-Type", ct)
			r.Header.Set("Authorization", "Bearer good-token")
			tok, _, err := x.Extract(r)
			if c.wantReason == "" {
				if err != nil || tok != "good-token" {
					t.Fatalf("got %q, %v; want the header token", tok, err)
				}
				got, _ := io.ReadAll(r.Body)
				if string(got) != body {
					t.Fatal("the multipart body did not reach the upstream unchanged")
				}
				return
			}
			if err == nil || err.Code != CodeInvalidRequest || err.Reason != c.wantReason || err.TooLarge != c.tooLarge {
				t.Fatalf("got %v, want invalid_request %s (too large: %v)", err, c.wantReason, c.tooLarge)
			}
		})
	}
	// Without form tokens the gateway does not read bodies at all.
	body, ct := multipartBody("access_token", 0)
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.Header.Set("Content-Type", ct)
	r.Header.Set("Authorization", "Bearer good-token")
	if tok, _, err := (Extractor{}).Extract(r); err != nil || tok != "good-token" {
		t.Fatalf("without allow_form_token: %q, %v", tok, err)
	}
}
