package introspect

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

func TestDoctorSupportUnverifiedJWT(t *testing.T) {
	seg := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	hdr := seg(`{"alg":"RS256","kid":"k1","typ":"at+jwt"}`)
	tok := hdr + "." + seg(`{"iss":"https://as.example","sub":"u"}`) + ".c2ln"
	h, c, ok := UnverifiedJWT(tok)
	if !ok || h["kid"] != "k1" || h["typ"] != "at+jwt" || c["iss"] != "https://as.example" {
		t.Errorf("UnverifiedJWT = %v %v %v", h, c, ok)
	}
	// The verifier's strict reader: a duplicate member is no claims set.
	h, c, ok = UnverifiedJWT(hdr + "." + seg(`{"iss":"a","iss":"b"}`) + ".c2ln")
	if ok || c != nil || h["alg"] != "RS256" {
		t.Errorf("duplicate claim: %v %v %v, want the header only", h, c, ok)
	}
	for _, tok := range []string{"opaque-token", hdr + ".." + "c2ln", strings.Repeat("a", 9000) + "." + seg("{}") + ".c2ln"} {
		if _, _, ok := UnverifiedJWT(tok); ok {
			t.Errorf("UnverifiedJWT(%.20q…) ok", tok)
		}
	}
}

// The doctor files New's failures by the setting New names; these are the
// prefixes it relies on.
func TestDoctorSupportNewFailure(t *testing.T) {
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	for _, tc := range []struct {
		name, setting string
		cfg           Config
	}{
		{"discovery", "issuer", Config{Issuer: notFound.URL, Introspect: &IntrospectOptions{ClientID: "gw", ClientSecret: "s"}}},
		{"private key", "introspect", Config{Introspect: &IntrospectOptions{Endpoint: "https://as.example/i", ClientID: "gw",
			AuthMethod: "private_key_jwt", PrivateKeyFile: filepath.Join(t.TempDir(), "missing")}}},
		{"jwks file", "jwt", Config{Issuer: "https://as.example", Audience: []string{"api"},
			JWT: &JWTOptions{JWKSFile: filepath.Join(t.TempDir(), "missing")}}},
	} {
		v, err := New(tc.cfg)
		if err == nil {
			v.Close()
			t.Fatalf("%s: New succeeded", tc.name)
		}
		setting, cause, ok := NewFailure(err)
		if !ok || setting != tc.setting || cause == nil || !strings.HasSuffix(err.Error(), cause.Error()) {
			t.Errorf("%s: NewFailure(%q) = %q, %v, %v; want %q", tc.name, err, setting, cause, ok, tc.setting)
		}
	}
	for _, err := range []error{nil, errors.New("issuer: not wrapped"), fmt.Errorf("two words: %w", errors.New("x"))} {
		if _, _, ok := NewFailure(err); ok {
			t.Errorf("NewFailure(%v) ok", err)
		}
	}
}

func TestDoctorSupportKeySetURLAndError(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer down.Close()
	v, err := New(Config{Issuer: "https://as.example", Audience: []string{"api"},
		JWT: &JWTOptions{JWKSURL: down.URL, AllowStartWithoutKeys: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if got := KeySetURL(v.KeySet()); got != down.URL {
		t.Errorf("KeySetURL = %q, want %q", got, down.URL)
	}
	if err := KeySetError(v.KeySet()); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("KeySetError = %v, want the HTTP 500", err)
	}

	f, err := New(Config{Issuer: "https://as.example", Audience: []string{"api"},
		JWT: &JWTOptions{JWKSFile: filepath.Join("..", "demo", "demo-jwks.json")}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if u, err := KeySetURL(f.KeySet()), KeySetError(f.KeySet()); u != "" || err != nil {
		t.Errorf("a key file: KeySetURL %q, KeySetError %v; want neither", u, err)
	}
}
