package caddymodule

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/testas"
	"github.com/tokengate/tokengate/introspect/diagnose"
)

// The doctor's resource metadata checks against the running gateway: the
// document is fetched from its URL, and the block's matcher decides
// whether the request reaches the handler at all.
func TestDoctorChecksTheServedResourceMetadata(t *testing.T) {
	as := testas.Start(t)
	for _, c := range []struct {
		name, matcher string
		served        diagnose.Status
		detail        string
	}{
		{"a whole-site block answers the metadata", "", diagnose.StatusPass, "serves this block's document"},
		// The well-known path is not under /mcp: the block never sees it,
		// and whatever comes next answers.
		{"a block matching /mcp only does not", "/mcp*", diagnose.StatusFail, "not a JSON document"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var site string
			tc := startCaddyFor(t, func(base string) string {
				site = fmt.Sprintf(`	bearer_auth %s {
		issuer %s
		introspect {
			client_id %s
			client_secret %s
		}
		resource_metadata {
			resource %s/mcp
		}
	}
	respond "ok"`, c.matcher, as.Issuer(), testas.GatewayID, testas.GatewaySecret, base)
				return site
			})
			cfg, err := adaptCaddyfile(tc.caddyfile(site))
			if err != nil {
				t.Fatal(err)
			}
			rep := runDoctor(context.Background(), diagnose.NewReport("Caddyfile", "caddyfile"), cfg, diagnose.Options{})
			var text strings.Builder
			rep.WriteText(&text)
			if len(rep.Blocks) != 1 {
				t.Fatalf("%d blocks:\n%s", len(rep.Blocks), text.String())
			}
			want := map[string]struct {
				status diagnose.Status
				detail string
			}{
				diagnose.CheckResourceMetadata:       {diagnose.StatusPass, "resource " + tc.base + "/mcp is the audience enforced"},
				diagnose.CheckResourceMetadataServed: {c.served, c.detail},
				diagnose.CheckAuthorizationServers:   {diagnose.StatusPass, "discovery answers: " + as.Issuer()},
			}
			for _, ch := range rep.Blocks[0].Checks {
				if w, ok := want[ch.Name]; ok {
					if ch.Status != w.status || !strings.Contains(ch.Detail, w.detail) {
						t.Errorf("%s: %s %q, want %s containing %q", ch.Name, ch.Status, ch.Detail, w.status, w.detail)
					}
					delete(want, ch.Name)
				}
			}
			if len(want) > 0 {
				t.Errorf("checks missing: %v\n%s", want, text.String())
			}
			if c.served == diagnose.StatusFail && !strings.Contains(text.String(), "make it match /.well-known/oauth-protected-resource/mcp and /.well-known/oauth-protected-resource too") {
				t.Errorf("no matcher hint:\n%s", text.String())
			}
		})
	}
}
