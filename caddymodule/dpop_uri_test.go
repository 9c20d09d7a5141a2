package caddymodule

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// TestHTUTrustsForwardedHeadersOnlyFromTrustedProxies: X-Forwarded-Proto
// and X-Forwarded-Host shape the expected htu only when Caddy marked the
// peer as one of its trusted_proxies; the path is the one before rewrites.
func TestHTUTrustsForwardedHeadersOnlyFromTrustedProxies(t *testing.T) {
	for _, tt := range []struct {
		name    string
		trusted bool
		want    string
	}{
		{"untrusted peer", false, "http://internal:8080/api/things"},
		{"trusted proxy", true, "https://api.example.com/api/things"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://internal:8080/api/things?x=1", nil)
			r.Header.Set("X-Forwarded-Proto", "https")
			r.Header.Set("X-Forwarded-Host", "api.example.com, evil.example")
			orig := *r
			ou := *r.URL
			orig.URL = &ou
			ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: tt.trusted})
			ctx = context.WithValue(ctx, caddyhttp.OriginalRequestCtxKey, orig)
			r = r.WithContext(ctx)
			u := *r.URL // as handle_path /api/* leaves it
			u.Path = "/things"
			r.URL = &u
			if got := requestURI(r); got != tt.want {
				t.Errorf("requestURI = %q, want %q", got, tt.want)
			}
		})
	}
}
