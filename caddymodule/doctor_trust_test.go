package caddymodule

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tokengate/tokengate/cache"
	"github.com/tokengate/tokengate/internal/testas"
	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/introspect/diagnose"
)

// The doctor on routes that trust several issuers: one block per issuer,
// each checked against its own server, and a token explained against the
// issuer the gateway would route it to.

// readmeTrust finds README examples with a trust block (Caddyfile or JSON).
var readmeTrust = regexp.MustCompile(`(?m)^\s*trust\s+\S|"trust":\s*\[\s*\{`)

// trustDoctorSite: A's JWTs and B's are verified with their discovered
// keys (B's for the API's name there, api-b), C's tokens are introspected
// (the API is svc-a there).
func trustDoctorSite(a, b, c *testas.Server) string {
	return fmt.Sprintf(`	bearer_auth {
		issuer %s
		audience svc-jwt
		scopes read
		jwt {
			typ JWT
		}
		trust %s {
			jwt {
				typ JWT
			}
			audience api-b
		}
		trust %s {
			introspect {
				client_id gateway
				client_secret gateway-secret
			}
			audience svc-a
		}
	}
	respond "ok"
`, a.Issuer(), b.Issuer(), c.Issuer())
}

// trustNormalizer names the servers A, B and C in the output. Longer
// issuers first: one port may be a prefix of another.
func trustNormalizer(t *testing.T, cfgPath string, named map[string]*testas.Server) *normalizer {
	n := newDoctorNormalizer(t, nil, cfgPath)
	names := make([]string, 0, len(named))
	for name := range named {
		names = append(names, name)
	}
	slices.SortFunc(names, func(x, y string) int { return len(named[y].Issuer()) - len(named[x].Issuer()) })
	for _, name := range names {
		n.add(named[name].Issuer(), "http://AS-"+name)
		n.add(named[name].KeyID(), "KID-"+name)
	}
	return n
}

func blockNamed(t *testing.T, rep *diagnose.Report, name string) *diagnose.Block {
	t.Helper()
	for _, b := range rep.Blocks {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("no block %s in:\n%s", name, reportText(rep))
	return nil
}

func expectCheck(t *testing.T, b *diagnose.Block, name string, status diagnose.Status, detail string) {
	t.Helper()
	c := checkNamed(b, name)
	if c == nil || c.Status != status || !strings.Contains(c.Detail, detail) {
		t.Errorf("%s %s: %v, want %s containing %q", b.Name, name, c, status, detail)
	}
}

// Every trusted issuer is checked as a block of its own: its discovery,
// its keys, its credentials, its clock — each against its own server.
func TestDoctorChecksEveryTrustedIssuer(t *testing.T) {
	a := testas.Start(t)
	b := testas.Start(t, testas.WithClients(partnerApp))
	c := testas.Start(t)
	cfg, err := adaptCaddyfile(":0 {\n" + trustDoctorSite(a, b, c) + "}\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, as := range []*testas.Server{a, b, c} {
		as.ResetCounts()
	}
	rep := runDoctor(context.Background(), diagnose.NewReport("test", ""), cfg, diagnose.Options{})
	if !rep.OK || len(rep.Blocks) != 3 {
		t.Fatalf("want 3 passing blocks:\n%s", reportText(rep))
	}
	own, tb, tc := rep.Blocks[0], rep.Blocks[1], rep.Blocks[2]
	if own.Name != "srv0#0" || tb.Name != "srv0#0 trust#1" || tc.Name != "srv0#0 trust#2" ||
		own.Issuer != a.Issuer() || tb.Issuer != b.Issuer() || tc.Issuer != c.Issuer() {
		t.Errorf("blocks %s (%s), %s (%s), %s (%s)", own.Name, own.Issuer, tb.Name, tb.Issuer, tc.Name, tc.Issuer)
	}
	expectCheck(t, own, diagnose.CheckJWKS, diagnose.StatusPass, "1 key at "+a.JWKSURL())
	expectCheck(t, tb, diagnose.CheckJWKS, diagnose.StatusPass, "1 key at "+b.JWKSURL())
	expectCheck(t, tb, diagnose.CheckConfig, diagnose.StatusPass, "audience api-b")
	expectCheck(t, tc, diagnose.CheckCredentials, diagnose.StatusPass, "accepted by "+c.IntrospectionURL())
	expectCheck(t, tc, diagnose.CheckJWKS, diagnose.StatusSkip, "no jwt block")
	for _, blk := range rep.Blocks {
		expectCheck(t, blk, diagnose.CheckDiscovery, diagnose.StatusPass, blk.Issuer+"/.well-known/")
		expectCheck(t, blk, diagnose.CheckClock, diagnose.StatusPass, "(Date of "+blk.Issuer)
	}
	for name, as := range map[string]*testas.Server{"A": a, "B": b, "C": c} {
		if n := as.Requests(as.DiscoveryPath()); n != 1 {
			t.Errorf("%s: %d discovery requests, want 1", name, n)
		}
	}
	if a.JWKSCalls() != 1 || b.JWKSCalls() != 1 || c.JWKSCalls() != 0 || c.IntrospectionCalls() != 1 || a.IntrospectionCalls()+b.IntrospectionCalls() != 0 {
		t.Errorf("requests: A %v, B %v, C %v", calls(a), calls(b), calls(c))
	}
}

// A trusted issuer the gateway cannot reach fails its own block, and the
// route as a whole: the gateway would not start with it.
func TestDoctorFailsTheRouteOfAnUnreachableTrustedIssuer(t *testing.T) {
	a := testas.Start(t)
	b := testas.Start(t)
	c := testas.Start(t)
	c.Stop()
	cfg, err := adaptCaddyfile(":0 {\n" + trustDoctorSite(a, b, c) + "}\n")
	if err != nil {
		t.Fatal(err)
	}
	rep := runDoctor(context.Background(), diagnose.NewReport("test", ""), cfg,
		diagnose.Options{Token: a.Token(t, "svc-jwt", "read"), HaveToken: true})
	if rep.OK {
		t.Fatalf("report OK with a trusted issuer down:\n%s", reportText(rep))
	}
	expectCheck(t, blockNamed(t, rep, "srv0#0"), diagnose.CheckDiscovery, diagnose.StatusPass, "issuer matches")
	expectCheck(t, blockNamed(t, rep, "srv0#0 trust#2"), diagnose.CheckDiscovery, diagnose.StatusFail, c.Issuer())
	// A's token cannot be judged by a gateway that does not start.
	expectCheck(t, blockNamed(t, rep, "srv0#0"), diagnose.CheckTokenValidation, diagnose.StatusFail,
		"srv0#0 trust#2 (issuer "+c.Issuer()+") cannot be loaded")
	expectCheck(t, blockNamed(t, rep, "srv0#0 trust#1"), diagnose.CheckTokenValidation, diagnose.StatusSkip, "explained under srv0#0")
}

// --token is explained against the issuer the token names, with the
// gateway's own router: B's token in B's block, a forgery in B's block too
// (and refused there), an untrusted issuer's token in the route's own block
// with the refusal the client would get.
func TestDoctorExplainsATokenAgainstTheIssuerItNames(t *testing.T) {
	a := testas.Start(t)
	b := testas.Start(t, testas.WithClients(partnerApp))
	c := testas.Start(t)
	path := writeDoctorCaddyfile(t, trustDoctorSite(a, b, c))
	n := trustNormalizer(t, path, map[string]*testas.Server{"A": a, "B": b, "C": c})

	untrusted := testas.Start(t)
	n.add(untrusted.Issuer(), "http://AS-UNTRUSTED")
	for _, tc := range []struct {
		golden, token string
		code          int
	}{
		{"trust_token_of_a_trusted_issuer.txt", b.Token(t, "partner-app", "read"), 0},
		{"trust_token_of_an_untrusted_issuer.txt", untrusted.Token(t, "svc-jwt", "read"), 1},
	} {
		fp := cache.NewKeyer(nil).Key(tc.token).Fingerprint()
		n.add(fp, "FINGERPRINT")
		r := runDoctorCLI(t, nil, tc.token, "--config", path, "--token", "-")
		expectExit(t, r, tc.code)
		if strings.Contains(r.stdout+r.stderr, tc.token) || strings.Count(r.stdout, "(token fingerprint "+fp+")") != 1 {
			t.Errorf("the token must not be printed, its fingerprint once (in the block that explains it):\n%s", r.stdout)
		}
		golden(t, tc.golden, n.apply(r.stdout))
	}

	// In process, for the forgery and the opaque token: where each went.
	cfg, err := adaptCaddyfile(":0 {\n" + trustDoctorSite(a, b, c) + "}\n")
	if err != nil {
		t.Fatal(err)
	}
	forged := a.SignToken(t, "", accessClaims(b.Issuer(), "api-b", "admin"))
	rep := runDoctor(context.Background(), diagnose.NewReport("test", ""), cfg, diagnose.Options{Token: forged, HaveToken: true})
	expectCheck(t, blockNamed(t, rep, "srv0#0 trust#1"), diagnose.CheckTokenValidation, diagnose.StatusFail, "unknown signing key")
	expectCheck(t, blockNamed(t, rep, "srv0#0 trust#1"), diagnose.CheckDecision, diagnose.StatusFail,
		`401 invalid_token, WWW-Authenticate: Bearer realm="tokengate", error="invalid_token", error_description="unknown signing key"`)
	expectCheck(t, blockNamed(t, rep, "srv0#0"), diagnose.CheckTokenValidation, diagnose.StatusSkip,
		"explained under srv0#0 trust#1 (its iss names "+b.Issuer()+")")

	// An opaque token of C goes to the first issuer with introspect: C.
	rep = runDoctor(context.Background(), diagnose.NewReport("test", ""), cfg,
		diagnose.Options{Token: c.Token(t, "svc-a", "read"), HaveToken: true})
	expectCheck(t, blockNamed(t, rep, "srv0#0 trust#2"), diagnose.CheckTokenValidation, diagnose.StatusPass,
		"opaque, so routed to the first issuer with introspect ("+c.Issuer()+"): opaque token introspected at "+c.IntrospectionURL())
	expectCheck(t, blockNamed(t, rep, "srv0#0 trust#2"), diagnose.CheckDecision, diagnose.StatusPass, "200: allowed")
}

// The README's trust examples, each issuer served by its own server: the
// doctor and Provision agree, per server, on discovery and keys, and per
// issuer on the introspection endpoint and key source.
func TestDoctorAgreesWithProvisioningOnREADMETrustExamples(t *testing.T) {
	checked := 0
	for _, ex := range readmeExamples(t) {
		if !readmeTrust.MatchString(ex.body) {
			continue
		}
		t.Run(fmt.Sprintf("README.md:%d", ex.line), func(t *testing.T) {
			own := testas.Start(t)
			servers := []*testas.Server{own}
			for _, m := range regexp.MustCompile(`(?m)^(\s*trust\s+)(https?://\S+)`).FindAllStringSubmatch(ex.body, -1) {
				as := testas.Start(t)
				servers = append(servers, as)
				ex.body = strings.Replace(ex.body, m[0], m[1]+as.Issuer(), 1)
			}
			cfg, ok, why := readmeConfig(t, own, ex)
			if !ok {
				t.Skipf("not a config: %s", why)
			}
			checked++
			count := func() (discovery, jwks []int) {
				for _, as := range servers {
					discovery, jwks = append(discovery, as.Requests(as.DiscoveryPath())), append(jwks, as.JWKSCalls())
				}
				return discovery, jwks
			}
			reset := func() {
				for _, as := range servers {
					as.ResetCounts()
				}
			}
			reset()
			rep := runDoctor(context.Background(), diagnose.NewReport("test", ""), cfg, diagnose.Options{})
			docDiscovery, docJWKS := count()
			if !rep.OK || len(rep.Blocks) != len(servers) {
				t.Fatalf("the doctor does not pass this example with %d blocks:\n%s", len(servers), reportText(rep))
			}
			reset()
			vs := provisionRoute(t, cfg)
			provDiscovery, provJWKS := count()
			if !slices.Equal(docDiscovery, provDiscovery) || !slices.Equal(docJWKS, provJWKS) {
				t.Errorf("per server, the doctor made %v discovery and %v JWKS requests, Provision %v and %v",
					docDiscovery, docJWKS, provDiscovery, provJWKS)
			}
			for i, blk := range rep.Blocks {
				v := vs[i]
				if blk.Issuer != v.Issuer() {
					t.Fatalf("block %s is %s, the gateway's issuer %d is %s", blk.Name, blk.Issuer, i, v.Issuer())
				}
				if in := v.Introspector(); in != nil {
					if got := checkNamed(blk, diagnose.CheckCredentials).Data["endpoint"]; got != in.Endpoint {
						t.Errorf("%s: doctor introspects at %v, the gateway at %s", blk.Name, got, in.Endpoint)
					}
				}
				if ks := v.KeySet(); ks != nil {
					if got := checkNamed(blk, diagnose.CheckJWKS).Data["url"]; got != introspect.KeySetURL(ks) {
						t.Errorf("%s: doctor's keys from %v, the gateway's from %s", blk.Name, got, introspect.KeySetURL(ks))
					}
				}
			}
		})
	}
	if checked < 2 {
		t.Errorf("only %d README trust examples checked", checked)
	}
}

// provisionRoute provisions the one bearer_auth handler of cfg as Caddy
// does and returns its issuers' validators, the route's own first.
func provisionRoute(t *testing.T, cfg []byte) []*introspect.Validator {
	t.Helper()
	found, err := findBearerAuth(cfg)
	if err != nil || len(found) != 1 {
		t.Fatalf("%d handlers (%v)", len(found), err)
	}
	h := new(Handler)
	if err := caddy.StrictUnmarshalJSON(found[0].raw, h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(func() {
		_ = h.Cleanup()
		cancel()
	})
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return h.issuers.Validators()
}
