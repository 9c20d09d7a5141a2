package caddymodule

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tokengate/tokengate/internal/testas"
	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/introspect/diagnose"
)

// The doctor must not drift from provisioning (issue 11): what it says a
// block needs — discovery or not, which introspection endpoint, which keys —
// must be what Provision does with the same block. These tests run both on
// the same configs against the in-process authorization server and compare
// what each did (requests counted at the server) and what each reports.

// readmeExample is a fenced block of README.md that mentions bearer_auth.
type readmeExample struct {
	line       int
	lang, body string
}

func readmeExamples(t *testing.T) []readmeExample {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeExample
	var cur *readmeExample
	for i, line := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &readmeExample{line: i + 1, lang: strings.TrimPrefix(line, "```")}
		case cur != nil && strings.HasPrefix(line, "```"):
			if strings.Contains(cur.body, "bearer_auth") {
				out = append(out, *cur)
			}
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		}
	}
	return out
}

// grammarPlaceholder marks the syntax summary (`issuer <url>`), which is
// not a config.
var grammarPlaceholder = regexp.MustCompile(`<[a-z][a-z_-]*(\.\.\.)?>`)

// readmeConfig turns a README example into a JSON config that runs against
// as: its issuers become as's, {env.*} and {file.*} placeholders resolve to
// the gateway's secret, a bare bearer_auth block gets a site around it, and
// a handler's JSON a server. ok is false for a block that is not a config
// (the syntax summary, a log line, a shell session); why says which.
func readmeConfig(t *testing.T, as *testas.Server, ex readmeExample) (cfg []byte, ok bool, why string) {
	t.Helper()
	body := ex.body
	trimmed := strings.TrimSpace(body)
	switch {
	case ex.lang != "" && ex.lang != "json" && ex.lang != "caddyfile":
		return nil, false, "a " + ex.lang + " block"
	case grammarPlaceholder.MatchString(body):
		return nil, false, "the syntax summary"
	case strings.HasPrefix(trimmed, `{"`):
		return nil, false, "a log line"
	}
	for _, m := range regexp.MustCompile(`(?:issuer\s+|"issuer":\s*")(https?://[^\s"]+)`).FindAllStringSubmatch(body, -1) {
		if strings.HasPrefix(m[1], "https://gateway.") {
			continue // upstream_token's issuer: the gateway's own, not the AS's
		}
		body = strings.ReplaceAll(body, m[1], as.Issuer())
	}
	// upstream_token's keys: a new key file for every path named.
	for _, m := range regexp.MustCompile(`(?:signing_key\s+|"signing_key":\s*")([^\s"]+)`).FindAllStringSubmatch(body, -1) {
		body = strings.ReplaceAll(body, m[1], writeSigningKey(t, "EC"))
	}
	for _, m := range regexp.MustCompile(`\{env\.([A-Za-z0-9_]+)\}`).FindAllStringSubmatch(body, -1) {
		t.Setenv(m[1], testas.GatewaySecret)
	}
	for _, m := range regexp.MustCompile(`\{file\.([^}]+)\}`).FindAllStringSubmatch(body, -1) {
		f := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(f, []byte(testas.GatewaySecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		body = strings.ReplaceAll(body, m[0], "{file."+f+"}")
	}
	if ex.lang == "json" {
		return fmt.Appendf(nil, `{"apps":{"http":{"servers":{"readme":{"listen":[":0"],"routes":[{"handle":[%s]}]}}}}}`, body), true, ""
	}
	if strings.HasPrefix(trimmed, "bearer_auth") {
		body = ":0 {\n" + body + "}\n"
	}
	cfg, err := adaptCaddyfile(body)
	if err != nil {
		t.Fatalf("README.md line %d does not adapt: %v\n%s", ex.line, err, body)
	}
	return cfg, true, ""
}

// provisioned is what Provision did with one handler.
type provisioned struct {
	cfg       introspect.Config
	validator *introspect.Validator
	discovery int // discovery requests at the server
	jwks      int // JWKS requests at the server
}

// provisionFound provisions each bearer_auth handler of cfg as Caddy does
// and counts the requests each one made. The shared Redis tier is left out
// here as in the doctor: it has nothing to do with what a block needs from
// the authorization server, and there is no Redis in this test.
func provisionFound(t *testing.T, as *testas.Server, cfg []byte) ([]provisioned, []error) {
	t.Helper()
	found, err := findBearerAuth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out []provisioned
	var errs []error
	for _, f := range found {
		h := new(Handler)
		if err := caddy.StrictUnmarshalJSON(f.raw, h); err != nil {
			t.Fatal(err)
		}
		if h.Cache != nil {
			h.Cache.Redis = ""
		}
		as.ResetCounts()
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := h.Provision(ctx)
		p := provisioned{discovery: as.Requests(as.DiscoveryPath()), jwks: as.JWKSCalls()}
		if err == nil {
			p.validator = h.entry.validator
			p.cfg = p.validator.Config()
		}
		out, errs = append(out, p), append(errs, err)
		t.Cleanup(func() {
			_ = h.Cleanup()
			cancel()
		})
	}
	return out, errs
}

// doctorOn runs the doctor in process on cfg and counts its requests.
func doctorOn(t *testing.T, as *testas.Server, cfg []byte, opts diagnose.Options) (rep *diagnose.Report, discovery, jwks, introspection int) {
	t.Helper()
	as.ResetCounts()
	rep = runDoctor(context.Background(), diagnose.NewReport("test", ""), cfg, opts)
	return rep, as.Requests(as.DiscoveryPath()), as.JWKSCalls(), as.IntrospectionCalls()
}

func checkNamed(b *diagnose.Block, name string) *diagnose.Check {
	for _, c := range b.Checks {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func reportText(rep *diagnose.Report) string {
	var buf bytes.Buffer
	rep.WriteText(&buf)
	return buf.String()
}

// compareWithProvisioning asserts that the doctor's block b and what
// Provision did (p) agree on everything the block needs.
func compareWithProvisioning(t *testing.T, b *diagnose.Block, p provisioned, docDiscovery, docJWKS int) {
	t.Helper()
	needs := p.cfg.NeedsDiscovery()
	disc := checkNamed(b, diagnose.CheckDiscovery)
	if ran := disc.Status != diagnose.StatusSkip; ran != needs {
		t.Errorf("%s: doctor's discovery check %s (%s), but the config needs discovery = %v", b.Name, disc.Status, disc.Detail, needs)
	}
	if did := p.validator.Metadata() != nil; did != needs || did != (p.discovery > 0) {
		t.Errorf("%s: Provision discovered = %v (%d requests), NeedsDiscovery = %v", b.Name, did, p.discovery, needs)
	}
	if docDiscovery != p.discovery || docJWKS != p.jwks {
		t.Errorf("%s: the doctor made %d discovery and %d JWKS requests, Provision %d and %d",
			b.Name, docDiscovery, docJWKS, p.discovery, p.jwks)
	}
	if in := p.validator.Introspector(); in != nil {
		if got := checkNamed(b, diagnose.CheckCredentials).Data["endpoint"]; got != in.Endpoint {
			t.Errorf("%s: doctor introspects at %v, the gateway at %s", b.Name, got, in.Endpoint)
		}
	}
	if ks := p.validator.KeySet(); ks != nil {
		data := checkNamed(b, diagnose.CheckJWKS).Data
		if u := introspect.KeySetURL(ks); data["url"] != u && !(u == "" && data["file"] == p.cfg.JWT.JWKSFile) {
			t.Errorf("%s: doctor's keys from %v / %v, the gateway's from %q / %q", b.Name, data["url"], data["file"], u, p.cfg.JWT.JWKSFile)
		}
	}
}

// Every example config of the README, fed to the doctor and to Provision:
// same discovery decision, same number of discovery and JWKS requests,
// same introspection endpoint and key source.
func TestDoctorAgreesWithProvisioningOnREADMEExamples(t *testing.T) {
	as := testas.Start(t)
	checked := 0
	for _, ex := range readmeExamples(t) {
		t.Run(fmt.Sprintf("README.md:%d", ex.line), func(t *testing.T) {
			if readmeTrust.MatchString(ex.body) {
				t.Skip("trusts several issuers: TestDoctorAgreesWithProvisioningOnREADMETrustExamples checks it against several servers")
			}
			cfg, ok, why := readmeConfig(t, as, ex)
			if !ok {
				t.Skipf("not a config: %s", why)
			}
			checked++
			rep, docDiscovery, docJWKS, _ := doctorOn(t, as, cfg, diagnose.Options{})
			if !rep.OK || len(rep.Blocks) != 1 {
				t.Fatalf("the doctor does not pass this example:\n%s", reportText(rep))
			}
			prov, errs := provisionFound(t, as, cfg)
			if errs[0] != nil {
				t.Fatalf("Provision: %v", errs[0])
			}
			compareWithProvisioning(t, rep.Blocks[0], prov[0], docDiscovery, docJWKS)
		})
	}
	// Local JWT, introspection, hybrid, fleet, and the JSON handler: a
	// README rewrite must not leave this test checking nothing.
	if checked < 5 {
		t.Errorf("only %d README examples checked", checked)
	}
}

// The settings that decide NeedsDiscovery, one at a time: explicit
// endpoints and keys need none, except auth_method bearer, whose own token
// endpoint is discovered unless configured.
func TestDoctorAgreesWithProvisioningOnExplicitEndpoints(t *testing.T) {
	as := testas.Start(t)
	intro := func(extra string) string {
		return fmt.Sprintf("issuer %s\n\t\tintrospect {\n\t\t\tendpoint %s\n\t\t\tclient_id gateway\n\t\t\tclient_secret gateway-secret\n\t\t\t%s\n\t\t}",
			as.Issuer(), as.IntrospectionURL(), extra)
	}
	for _, tc := range []struct{ name, block string }{
		{"introspection endpoint", intro("")},
		{"bearer without token_endpoint", intro("auth_method bearer")},
		{"bearer with token_endpoint", intro("auth_method bearer\n\t\t\ttoken_endpoint " + as.TokenURL())},
		{"jwks_url", fmt.Sprintf("issuer %s\n\t\taudience svc-jwt\n\t\tjwt {\n\t\t\tjwks_url %s\n\t\t}", as.Issuer(), as.JWKSURL())},
		{"discovered jwks_uri", fmt.Sprintf("issuer %s\n\t\taudience svc-jwt\n\t\tjwt", as.Issuer())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := adaptCaddyfile(":0 {\n\tbearer_auth {\n\t\t" + tc.block + "\n\t}\n}\n")
			if err != nil {
				t.Fatal(err)
			}
			rep, docDiscovery, docJWKS, _ := doctorOn(t, as, cfg, diagnose.Options{})
			prov, errs := provisionFound(t, as, cfg)
			if errs[0] != nil {
				t.Fatalf("Provision: %v", errs[0])
			}
			compareWithProvisioning(t, rep.Blocks[0], prov[0], docDiscovery, docJWKS)
		})
	}
}

// Regression (issue 11): with auth_method bearer and no token_endpoint the
// gateway discovers the token endpoint, so a failing discovery stops it.
// The doctor used to call discovery "not needed" there (a warning) while
// Provision failed on it. A block that really needs none is not checked for
// it at all.
func TestDoctorBearerWithoutTokenEndpointNeedsDiscovery(t *testing.T) {
	as := testas.Start(t)
	// The trailing slash makes discovery fail (the metadata names the
	// issuer without it) while every configured endpoint works.
	block := func(authLines string) []byte {
		cfg, err := adaptCaddyfile(fmt.Sprintf(":0 {\n\tbearer_auth {\n\t\tissuer %s/\n\t\tintrospect {\n\t\t\tendpoint %s\n\t\t\tclient_id gateway\n\t\t\tclient_secret gateway-secret\n\t\t\t%s\n\t\t}\n\t}\n}\n",
			as.Issuer(), as.IntrospectionURL(), authLines))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	t.Run("bearer without token_endpoint", func(t *testing.T) {
		cfg := block("auth_method bearer")
		rep, _, _, _ := doctorOn(t, as, cfg, diagnose.Options{})
		b := rep.Blocks[0]
		disc := checkNamed(b, diagnose.CheckDiscovery)
		if disc.Status != diagnose.StatusFail || strings.Contains(disc.Detail, "not needed") || rep.OK {
			t.Errorf("the doctor must fail discovery (the gateway needs the token endpoint):\n%s", reportText(rep))
		}
		_, errs := provisionFound(t, as, cfg)
		if errs[0] == nil || !strings.Contains(errs[0].Error(), "names issuer") {
			t.Errorf("Provision: %v, want the discovery failure the doctor reports", errs[0])
		}

		// The CLI's words for it (new golden: the old doctor printed
		// "! discovery  not needed by this block (endpoints are explicit)").
		path := writeDoctorCaddyfile(t, fmt.Sprintf("\tbearer_auth {\n\t\tissuer %s/\n\t\tintrospect {\n\t\t\tendpoint %s\n\t\t\tclient_id gateway\n\t\t\tclient_secret gateway-secret\n\t\t\tauth_method bearer\n\t\t}\n\t}\n\trespond \"ok\"\n",
			as.Issuer(), as.IntrospectionURL()))
		r := runDoctorCLI(t, nil, "", "--config", path)
		expectExit(t, r, 1)
		golden(t, "bearer_discovery_needed.txt", newDoctorNormalizer(t, as, path).apply(r.stdout))
	})

	t.Run("client_secret_basic with an endpoint", func(t *testing.T) {
		cfg := block("")
		rep, docDiscovery, _, _ := doctorOn(t, as, cfg, diagnose.Options{})
		disc := checkNamed(rep.Blocks[0], diagnose.CheckDiscovery)
		if disc.Status != diagnose.StatusSkip || docDiscovery != 0 {
			t.Errorf("discovery is not needed here (%d requests):\n%s", docDiscovery, reportText(rep))
		}
		prov, errs := provisionFound(t, as, cfg)
		if errs[0] != nil || prov[0].discovery != 0 {
			t.Errorf("Provision: %v after %d discovery requests, want neither", errs[0], prov[0].discovery)
		}
	})
}

// One doctor run, one validator per block: discovery once, the JWKS once,
// and one introspection (the credentials canary) — the token's decision
// comes from the same validator and the handler's cache, not from a second
// one.
func TestDoctorBuildsOneValidatorPerBlock(t *testing.T) {
	as := testas.Start(t)
	cfg, err := adaptCaddyfile(fmt.Sprintf(`:0 {
	bearer_auth {
		issuer %s
		audience svc-jwt
		jwt {
			typ JWT
		}
		introspect {
			client_id gateway
			client_secret gateway-secret
		}
	}
}
`, as.Issuer()))
	if err != nil {
		t.Fatal(err)
	}
	tok := as.Token(t, "svc-jwt", "read")
	rep, discovery, jwks, introspection := doctorOn(t, as, cfg, diagnose.Options{Token: tok, HaveToken: true})
	if !rep.OK {
		t.Fatalf("report:\n%s", reportText(rep))
	}
	if discovery != 1 || jwks != 1 || introspection != 1 {
		t.Errorf("one doctor run made %d discovery, %d JWKS and %d introspection requests, want 1 each\n%s",
			discovery, jwks, introspection, reportText(rep))
	}
}
