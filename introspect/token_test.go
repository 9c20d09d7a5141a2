package introspect

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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

func TestParseIntrospectionResponseFailsClosed(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		body string
		code Code
	}{
		{`{"active":true,"scope":"a b","client_id":"c","exp":1700000100}`, ""},
		{`{"active":false}`, CodeInvalidToken},
		{`{"active":"true"}`, CodeUnavailable},
		{`{"active":1}`, CodeUnavailable},
		{`{"scope":"a"}`, CodeUnavailable},
		{`<html>login</html>`, CodeUnavailable},
		{`[]`, CodeUnavailable},
		{`null`, CodeUnavailable},
		{`{"active":true} {"active":false}`, CodeUnavailable},
		{`{"active":true,"exp":"1700000100"}`, CodeUnavailable},
		{`{"active":true,"exp":1699999999}`, CodeInvalidToken},
		{`{"active":true,"nbf":1700000100}`, CodeInvalidToken},
		{`{"active":true,"iss":"https://other"}`, CodeInvalidToken},
		{`{"active":true,"iss":"https://as"}`, ""},
		{`{"active":true,"client_id":["a"]}`, CodeUnavailable},
		{`{"active":true,"aud":["x","y"]}`, ""},
		{`{"active":true,"token_type":"refresh_token"}`, CodeInvalidToken},
		{`{"active":true,"token_use":"refresh_token"}`, CodeInvalidToken},
		{`{"active":true,"token_type":"Bearer","token_use":"access_token"}`, ""},
		// One strict reader for both token paths: duplicates at any depth
		// and anything after the object fail closed.
		{`{"active":false,"active":true}`, CodeUnavailable},
		{`{"active":true,"client_id":"a","client_id":"b"}`, CodeUnavailable},
		{`{"active":true,"ext":{"role":"user","role":"admin"}}`, CodeUnavailable},
		{`{"active":true,"ext":[{"a":1,"a":2}]}`, CodeUnavailable},
		{`{"active":true}garbage`, CodeUnavailable},
		{`{"active":true} x`, CodeUnavailable},
		{`{"active":true}}`, CodeUnavailable},
		{`{"active":true}]`, CodeUnavailable},
		{"{\"active\":true,\"sub\":\"\xff\"}", CodeUnavailable},
		{`{"active":true,"ext":{"a":1,"b":{"a":1}}}`, ""},
		{`{"active":true,"s":"a:b","t":"{\"x\":1,\"x\":2}"}`, ""},
		// iat in the future beyond leeway: the same rule as for JWTs.
		{`{"active":true,"iat":1700000100}`, CodeInvalidToken},
	}
	for _, tt := range tests {
		d, err := ParseIntrospectionResponse([]byte(tt.body), now, 0, "https://as")
		switch {
		case tt.code == "" && (err != nil || d == nil):
			t.Errorf("%s: unexpected error %v", tt.body, err)
		case tt.code != "" && (err == nil || err.Code != tt.code):
			t.Errorf("%s: got %v, want %s", tt.body, err, tt.code)
		}
	}
	d, _ := ParseIntrospectionResponse([]byte(`{"active":true,"scope":"read write","client_id":"c","aud":"api","exp":1700000100}`), now, 0, "")
	if d.ScopeString() != "read write" || d.ClientID != "c" || d.UserID() != "c" || d.Audience[0] != "api" || !d.ExpiresAt.Equal(time.Unix(1700000100, 0)) {
		t.Errorf("decision %+v", d)
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

func FuzzParseIntrospectionResponse(f *testing.F) {
	for _, s := range []string{`{"active":true}`, `{"active":false}`, `{"active":"true"}`, `{"active":true,"exp":1e400}`,
		`{"active":true,"scope":["a"],"aud":[1]}`, `{"active":true,"exp":-1}`, `{`, `{"active":true,"nested":{"a":[{"b":null}]}}`} {
		f.Add([]byte(s))
	}
	now := time.Unix(1_700_000_000, 0)
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := ParseIntrospectionResponse(body, now, 0, "")
		if (d == nil) == (err == nil) {
			t.Fatalf("exactly one of decision and error must be set: %v %v", d, err)
		}
		if d != nil && !strings.Contains(string(body), "true") {
			t.Fatalf("accepted a response without active:true: %s", body)
		}
		if err != nil && err.Code != CodeInvalidToken && err.Code != CodeUnavailable {
			t.Fatalf("unexpected code %s", err.Code)
		}
	})
}
