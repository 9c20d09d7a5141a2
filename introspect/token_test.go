package introspect

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/introspect/claims"
)

func TestParseAuthorizationFollowsRFC6750(t *testing.T) {
	tests := []struct {
		header   string
		token    string
		isBearer bool
		reason   string
	}{
		{"Bearer abc.DEF-_~+/=", "abc.DEF-_~+/=", true, ""},
		{"bearer abc", "abc", true, ""},
		{"BEARER abc==", "abc==", true, ""},
		{"Bearer   abc", "abc", true, ""},
		{"Basic dXNlcjpwYXNz", "", false, ""},
		{"Bearerabc", "", false, ""},
		{"", "", false, ""},
		{"Bearer", "", true, "empty_token"},
		{"Bearer ", "", true, "empty_token"},
		{"Bearer\tabc", "", true, "bad_syntax"},
		{"Bearer a b", "", true, "bad_syntax"},
		{"Bearer abc ", "", true, "bad_syntax"},
		{"Bearer a=b", "", true, "bad_syntax"},
		{"Bearer =abc", "", true, "bad_syntax"},
		{"Bearer abc\x00", "", true, "bad_syntax"},
		{"Bearer ab\"c", "", true, "bad_syntax"},
		{"Bearer é", "", true, "bad_syntax"},
	}
	for _, tt := range tests {
		tok, isBearer, err := ParseAuthorization(tt.header)
		reason := ""
		if err != nil {
			reason = err.Reason
			if err.Code != CodeInvalidRequest {
				t.Errorf("%q: code %s, want invalid_request", tt.header, err.Code)
			}
		}
		if tok != tt.token || isBearer != tt.isBearer || reason != tt.reason {
			t.Errorf("ParseAuthorization(%q) = %q, %v, %q; want %q, %v, %q", tt.header, tok, isBearer, reason, tt.token, tt.isBearer, tt.reason)
		}
	}
}

func TestExtractorRejectsTokensSentTwoWaysAndHonoursDisabledTransports(t *testing.T) {
	form := func(body string) *http.Request {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}
	r := form("access_token=abc&x=1")
	if tok, _, err := (Extractor{}).Extract(r); tok != "" || err != nil {
		t.Errorf("form transport off: got %q %v", tok, err)
	}
	r = form("access_token=abc&x=1")
	if tok, from, err := (Extractor{AllowForm: true}).Extract(r); tok != "abc" || from != TransportForm || err != nil {
		t.Errorf("form transport on: got %q %v", tok, err)
	}
	b := make([]byte, 64)
	n, _ := r.Body.Read(b)
	if string(b[:n]) != "access_token=abc&x=1" {
		t.Errorf("body not restored for the upstream: %q", b[:n])
	}
	r = form("access_token=abc")
	r.Header.Set("Authorization", "Bearer abc")
	if _, _, err := (Extractor{AllowForm: true}).Extract(r); err == nil || err.Reason != "multiple_tokens" {
		t.Errorf("header+form: %v", err)
	}
	r = httptest.NewRequest("GET", "/?access_token=abc", nil)
	if tok, _, err := (Extractor{}).Extract(r); tok != "" || err != nil {
		t.Errorf("query off: %q %v", tok, err)
	}
	if tok, from, err := (Extractor{AllowQuery: true}).Extract(r); tok != "abc" || from != TransportQuery || err != nil {
		t.Errorf("query on: %q %v", tok, err)
	}
	r = httptest.NewRequest("GET", "/?access%5Ftoken=abc", nil)
	r.Header.Set("Authorization", "Bearer abc")
	if _, _, err := (Extractor{AllowQuery: true}).Extract(r); err == nil || err.Reason != "multiple_tokens" {
		t.Errorf("percent-encoded query name with a header token: %v", err)
	}
	r = httptest.NewRequest("GET", "/?access_token=abc&access_token=def", nil)
	if _, _, err := (Extractor{AllowQuery: true}).Extract(r); err == nil {
		t.Error("two query tokens accepted")
	}
	r = httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+strings.Repeat("a", 100))
	if _, _, err := (Extractor{MaxLength: 50}).Extract(r); err == nil || err.Reason != "header_too_long" {
		t.Errorf("over-long: %v", err)
	}
}

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a.b.c", "Bearer a b", "Bearer", "Basic x", "Bearer abc==", "Bearer =", "Bearer \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, isBearer, err := ParseAuthorization(h)
		if err != nil {
			if err.Code != CodeInvalidRequest || tok != "" {
				t.Fatalf("error with code %s and token %q", err.Code, tok)
			}
			return
		}
		if tok == "" {
			if isBearer {
				t.Fatal("bearer scheme with empty token and no error")
			}
			return
		}
		// Whatever is accepted must be a b64token and present verbatim.
		if !strings.HasSuffix(h, tok) || strings.ContainsAny(tok, " \t\r\n\"\\,;") {
			t.Fatalf("accepted %q from %q", tok, h)
		}
		if _, e := claims.CheckB64Token(tok, len(tok)); e != nil {
			t.Fatalf("accepted a non-b64token %q", tok)
		}
	})
}
