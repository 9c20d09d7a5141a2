package asclient

import (
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/introspect/claims"
)

func TestParseIntrospectionResponseFailsClosed(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		body string
		code claims.Code
	}{
		{`{"active":true,"scope":"a b","client_id":"c","exp":1700000100}`, ""},
		{`{"active":false}`, claims.CodeInvalidToken},
		{`{"active":"true"}`, claims.CodeUnavailable},
		{`{"active":1}`, claims.CodeUnavailable},
		{`{"scope":"a"}`, claims.CodeUnavailable},
		{`<html>login</html>`, claims.CodeUnavailable},
		{`[]`, claims.CodeUnavailable},
		{`null`, claims.CodeUnavailable},
		{`{"active":true} {"active":false}`, claims.CodeUnavailable},
		{`{"active":true,"exp":"1700000100"}`, claims.CodeUnavailable},
		{`{"active":true,"exp":1699999999}`, claims.CodeInvalidToken},
		{`{"active":true,"nbf":1700000100}`, claims.CodeInvalidToken},
		{`{"active":true,"iss":"https://other"}`, claims.CodeInvalidToken},
		{`{"active":true,"iss":"https://as"}`, ""},
		{`{"active":true,"client_id":["a"]}`, claims.CodeUnavailable},
		{`{"active":true,"aud":["x","y"]}`, ""},
		{`{"active":true,"token_type":"refresh_token"}`, claims.CodeInvalidToken},
		{`{"active":true,"token_use":"refresh_token"}`, claims.CodeInvalidToken},
		{`{"active":true,"token_type":"Bearer","token_use":"access_token"}`, ""},
		// One strict reader for both token paths: duplicates at any depth
		// and anything after the object fail closed.
		{`{"active":false,"active":true}`, claims.CodeUnavailable},
		{`{"active":true,"client_id":"a","client_id":"b"}`, claims.CodeUnavailable},
		{`{"active":true,"ext":{"role":"user","role":"admin"}}`, claims.CodeUnavailable},
		{`{"active":true,"ext":[{"a":1,"a":2}]}`, claims.CodeUnavailable},
		{`{"active":true}garbage`, claims.CodeUnavailable},
		{`{"active":true} x`, claims.CodeUnavailable},
		{`{"active":true}}`, claims.CodeUnavailable},
		{`{"active":true}]`, claims.CodeUnavailable},
		{"{\"active\":true,\"sub\":\"\xff\"}", claims.CodeUnavailable},
		{`{"active":true,"ext":{"a":1,"b":{"a":1}}}`, ""},
		{`{"active":true,"s":"a:b","t":"{\"x\":1,\"x\":2}"}`, ""},
		// iat in the future beyond leeway: the same rule as for JWTs.
		{`{"active":true,"iat":1700000100}`, claims.CodeInvalidToken},
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
	if d.ScopeString() != "read write" || d.ClientID() != "c" || d.UserID() != "c" || d.Audience()[0] != "api" || !d.ExpiresAt().Equal(time.Unix(1700000100, 0)) {
		t.Errorf("decision %+v", d)
	}
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
		if err != nil && err.Code != claims.CodeInvalidToken && err.Code != claims.CodeUnavailable {
			t.Fatalf("unexpected code %s", err.Code)
		}
	})
}
