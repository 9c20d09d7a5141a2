package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	goflag "flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/cache"
	"github.com/tokengate/tokengate/internal/testas"
	"github.com/tokengate/tokengate/introspect/diagnose"
)

// Golden-output tests of `caddy bearer-auth doctor`: the test binary is
// re-executed as the real Caddy CLI (see TestMain), against a real
// authorization server in this process. Run with -update to rewrite the
// files under testdata/doctor/.

func init() {
	// Another test file of this package may define -update too.
	if goflag.Lookup("update") == nil {
		goflag.Bool("update", false, "rewrite golden files")
	}
}

func updateGoldens() bool {
	f := goflag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

type doctorRun struct {
	stdout, stderr string
	code           int
}

// runDoctorCLI runs `caddy bearer-auth doctor <args>` as a child process.
// Arguments must not contain spaces (TOKENGATE_TEST_CADDY_ARGS is split on
// whitespace).
func runDoctorCLI(t *testing.T, env []string, stdin string, args ...string) doctorRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), runAsCaddyEnv+"=1",
		runAsCaddyArgsEnv+"=bearer-auth doctor "+strings.Join(args, " "))
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := doctorRun{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("running the doctor: %v\n%s", err, stderr.String())
	}
	return r
}

// writeDoctorCaddyfile writes a Caddyfile with a fixed site address (the
// doctor serves nothing) and returns its path.
func writeDoctorCaddyfile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	cf := "{\n\tadmin off\n}\n\nhttp://localhost:8080 {\n" + body + "}\n"
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// normalizer makes output comparable across runs.
type normalizer struct {
	literal []string // pairs: old, new
}

func (n *normalizer) add(old, new string) {
	if old != "" {
		n.literal = append(n.literal, old, new)
	}
}

var doctorVolatile = []struct {
	re   *regexp.Regexp
	repl string
}{
	// A clock in step reads +0s, or ±1s on a slow run; larger offsets
	// (the skew test's 2m0s) stay as they are.
	{regexp.MustCompile(`offset [+-](0s|1s): (in step with the authorization server|the authorization server's clock is 1s (ahead of|behind) this host's)`), "offset ~0s: in step with the authorization server"},
	{regexp.MustCompile(`"offset_seconds": -?[0-9.e+-]+`), `"offset_seconds": OFFSET`},
	// Token expiry and length.
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`), "TIME"},
	{regexp.MustCompile(`b64token, \d+ bytes`), "b64token, N bytes"},
	{regexp.MustCompile(`"length": \d+`), `"length": N`},
	// Any other loopback port.
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:PORT"},
}

func (n *normalizer) apply(s string) string {
	s = strings.NewReplacer(n.literal...).Replace(s)
	for _, v := range doctorVolatile {
		s = v.re.ReplaceAllString(s, v.repl)
	}
	return s
}

// golden compares got (normalized) with testdata/doctor/name, or rewrites it
// with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "doctor", name)
	if updateGoldens() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if string(want) != got {
		t.Errorf("output differs from %s (run with -update if the change is intended)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

func newDoctorNormalizer(t *testing.T, as *testas.Server, cfgPath string) *normalizer {
	n := &normalizer{}
	n.add(filepath.Dir(cfgPath), "TMP")
	if as != nil {
		n.add(as.Issuer(), "http://AS")
		n.add(as.KeyID(), "KID")
	}
	return n
}

func introspectBlock(issuerLine, secret, extra string) string {
	return fmt.Sprintf(`	handle /api/* {
		bearer_auth {
			%s
			introspect {
				client_id gateway
				client_secret %s
			}
			%s
		}
		respond "ok"
	}
`, issuerLine, secret, extra)
}

func jwtBlock(issuer string) string {
	return fmt.Sprintf(`	handle /jwt/* {
		bearer_auth {
			issuer %s
			audience svc-jwt
			scopes read
			jwt {
				typ JWT
			}
		}
		respond "ok"
	}
`, issuer)
}

func expectExit(t *testing.T, r doctorRun, code int) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

func TestDoctorHealthyAndAuthorizationServerDown(t *testing.T) {
	as := testas.Start(t)
	cfg := writeDoctorCaddyfile(t, introspectBlock("issuer "+as.Issuer(), "gateway-secret", "scopes read")+jwtBlock(as.Issuer()))
	n := newDoctorNormalizer(t, as, cfg)

	r := runDoctorCLI(t, nil, "", "--config", cfg)
	expectExit(t, r, 0)
	golden(t, "healthy.txt", n.apply(r.stdout))

	r = runDoctorCLI(t, nil, "", "--config", cfg, "--adapter", "caddyfile", "--json")
	expectExit(t, r, 0)
	var doc diagnose.Report
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, r.stdout)
	}
	if !doc.OK || doc.Version != 1 || len(doc.Blocks) != 2 || doc.Summary.Fail != 0 {
		t.Errorf("JSON report: ok=%v version=%d blocks=%d summary=%+v", doc.OK, doc.Version, len(doc.Blocks), doc.Summary)
	}
	golden(t, "healthy.json", n.apply(r.stdout))

	as.Stop()
	r = runDoctorCLI(t, nil, "", "--config", cfg)
	expectExit(t, r, 1)
	if !strings.Contains(r.stdout, "✘ discovery") || !strings.Contains(r.stdout, "connection refused") ||
		!strings.Contains(r.stdout, "check: check that the issuer is reachable") {
		t.Errorf("no discovery failure with its hint:\n%s", r.stdout)
	}
	golden(t, "as_down.txt", n.apply(r.stdout))
}

func TestDoctorWrongClientSecret(t *testing.T) {
	as := testas.Start(t)
	// The secret comes from an {env.*} placeholder, resolved like at load
	// time, in the doctor's environment.
	cfg := writeDoctorCaddyfile(t, introspectBlock("issuer "+as.Issuer(), "{env.TOKENGATE_DOCTOR_SECRET}", ""))
	n := newDoctorNormalizer(t, as, cfg)
	r := runDoctorCLI(t, []string{"TOKENGATE_DOCTOR_SECRET=not-the-secret"}, "", "--config", cfg)
	expectExit(t, r, 1)
	if !strings.Contains(r.stdout, "✘ credentials  invalid_client") || !strings.Contains(r.stdout, "client_secret") {
		t.Errorf("no credentials failure naming client_secret:\n%s", r.stdout)
	}
	golden(t, "wrong_secret.txt", n.apply(r.stdout))

	// The same, unset: the config check says the placeholder resolved to
	// nothing, and nothing else runs.
	r = runDoctorCLI(t, nil, "", "--config", cfg)
	expectExit(t, r, 1)
	golden(t, "secret_unset.txt", n.apply(r.stdout))
}

// dateSkewProxy forwards to the AS and rewrites the Date header of every
// answer as a server whose clock is off by skew would send it.
func dateSkewProxy(t *testing.T, as *testas.Server, skew time.Duration) *httptest.Server {
	target, _ := url.Parse(as.Issuer())
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		resp.Header.Set("Date", time.Now().Add(skew).UTC().Format(http.TimeFormat))
		return nil
	}
	p := httptest.NewServer(rp)
	t.Cleanup(p.Close)
	return p
}

func TestDoctorClockSkew(t *testing.T) {
	as := testas.Start(t)
	proxy := dateSkewProxy(t, as, 2*time.Minute)
	endpoint := proxy.URL + as.IntrospectionPath()
	cfg := writeDoctorCaddyfile(t, fmt.Sprintf(`	bearer_auth {
		introspect {
			endpoint %s
			client_id gateway
			client_secret gateway-secret
		}
	}
	respond "ok"
`, endpoint))
	n := newDoctorNormalizer(t, as, cfg)
	n.add(proxy.URL, "http://SKEWED-AS")

	r := runDoctorCLI(t, nil, "", "--config", cfg)
	expectExit(t, r, 1)
	if !strings.Contains(r.stdout, "clock is 2m0s ahead of this host's") || !strings.Contains(r.stdout, "NTP") {
		t.Errorf("no clock failure of 2m0s with the NTP hint:\n%s", r.stdout)
	}
	golden(t, "clock_skew.txt", n.apply(r.stdout))

	r = runDoctorCLI(t, nil, "", "--config", cfg, "--json")
	expectExit(t, r, 1)
	var doc diagnose.Report
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	var clock *diagnose.Check
	for _, c := range doc.Blocks[0].Checks {
		if c.Name == diagnose.CheckClock {
			clock = c
		}
	}
	if clock == nil || clock.Status != diagnose.StatusFail {
		t.Fatalf("clock check: %+v", clock)
	}
	if off, _ := clock.Data["offset_seconds"].(float64); off < 118 || off > 122 {
		t.Errorf("offset_seconds = %v, want about 120", clock.Data["offset_seconds"])
	}
}

func TestDoctorExplainsToken(t *testing.T) {
	as := testas.Start(t)
	opaqueCfg := writeDoctorCaddyfile(t, introspectBlock("issuer "+as.Issuer(), "gateway-secret", "scopes read write"))
	jwtCfg := writeDoctorCaddyfile(t, jwtBlock(as.Issuer()))

	tokens := []struct {
		name, cfg, token, stdin string
		code                    int
		want                    string // in the decision line
		json                    bool
	}{
		{name: "good_opaque", cfg: opaqueCfg, token: as.Token(t, "svc-a", "read", "write"), code: 0, want: "✔ decision          200"},
		{name: "good_jwt", cfg: jwtCfg, token: as.Token(t, "svc-jwt", "read"), code: 0, want: "✔ decision          200"},
		{name: "missing_scope", cfg: opaqueCfg, token: as.Token(t, "svc-b", "read"), code: 1, json: true,
			want: `✘ decision          403 insufficient_scope, WWW-Authenticate: Bearer realm="tokengate", error="insufficient_scope", error_description="the token lacks a required scope", scope="read write"`},
		// Read from stdin, and given as a whole header value.
		{name: "garbage", cfg: opaqueCfg, stdin: "Bearer garbage\n", token: "garbage", code: 1,
			want: `✘ decision          401 invalid_token, WWW-Authenticate: Bearer realm="tokengate", error="invalid_token"`},
		{name: "bad_syntax", cfg: opaqueCfg, token: `not"a"token`, code: 1,
			want: `✘ decision          400 invalid_request`},
	}
	for _, tc := range tokens {
		t.Run(tc.name, func(t *testing.T) {
			n := newDoctorNormalizer(t, as, tc.cfg)
			fp := cache.NewKeyer(nil).Key(tc.token).Fingerprint()
			n.add(fp, "FINGERPRINT")
			arg := tc.token
			if tc.stdin != "" {
				arg = "-"
			}
			r := runDoctorCLI(t, nil, tc.stdin, "--config", tc.cfg, "--token", arg)
			expectExit(t, r, tc.code)
			if strings.Contains(r.stdout, tc.token) || strings.Contains(r.stderr, tc.token) {
				t.Errorf("the token itself was printed:\n%s\n%s", r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, "(token fingerprint "+fp+")") {
				t.Errorf("no fingerprint %s in:\n%s", fp, r.stdout)
			}
			if !strings.Contains(r.stdout, tc.want) {
				t.Errorf("want %q in:\n%s", tc.want, r.stdout)
			}
			golden(t, "token_"+tc.name+".txt", n.apply(r.stdout))
			if tc.json {
				r = runDoctorCLI(t, nil, "", "--config", tc.cfg, "--token", arg, "--json")
				expectExit(t, r, tc.code)
				golden(t, "token_"+tc.name+".json", n.apply(r.stdout))
			}
		})
	}
}

func TestDoctorNoBearerAuthAndBadConfig(t *testing.T) {
	cfg := writeDoctorCaddyfile(t, "\trespond \"ok\"\n")
	r := runDoctorCLI(t, nil, "", "--config", cfg)
	expectExit(t, r, 1)
	if !strings.Contains(r.stdout, "no bearer_auth handler") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	r = runDoctorCLI(t, nil, "", "--config", filepath.Join(t.TempDir(), "missing"), "--json")
	expectExit(t, r, 1)
	var doc diagnose.Report
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.OK || doc.Error == "" {
		t.Errorf("JSON for a missing config: %v %+v\n%s", err, doc, r.stdout)
	}
}

// In process: the walk finds handlers at any depth, names them by server and
// position, and keeps the route matchers.
func TestFindBearerAuthWalksNestedRoutes(t *testing.T) {
	cfg := `{"apps":{"http":{"servers":{
		"b":{"routes":[{"handle":[{"handler":"bearer_auth","issuer":"https://b"}]}]},
		"a":{"routes":[
			{"match":[{"host":["api.example.com"]}],"handle":[{"handler":"subroute","routes":[
				{"match":[{"path":["/v1/*"]}],"handle":[{"handler":"bearer_auth","issuer":"https://one"},{"handler":"reverse_proxy"}]},
				{"handle":[{"handler":"subroute","routes":[{"handle":[{"handler":"bearer_auth","issuer":"https://two"}]}]}]}
			]}]}
		]}
	}}}}`
	found, err := findBearerAuth([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range found {
		got = append(got, fmt.Sprintf("%s#%d %s %v %v %s", f.server, f.index, f.path, f.hosts, f.paths, f.raw))
	}
	want := []string{
		`a#0 /apps/http/servers/a/routes/0/handle/0/routes/0/handle/0 [api.example.com] [/v1/*] {"issuer":"https://one"}`,
		`a#1 /apps/http/servers/a/routes/0/handle/0/routes/1/handle/0/routes/0/handle/0 [api.example.com] [] {"issuer":"https://two"}`,
		`b#0 /apps/http/servers/b/routes/0/handle/0 [] [] {"issuer":"https://b"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A JSON config (no adapter), and an issuer that differs from the server's
// by a trailing slash: discovery fails with the hint to copy it exactly.
// (The clock reads the Date of the doctor's own request to the issuer: a
// failed discovery inside introspect.New leaves no answer to time.)
func TestDoctorIssuerMismatchInJSONConfig(t *testing.T) {
	as := testas.Start(t)
	cfg := fmt.Sprintf(`{"apps":{"http":{"servers":{"api":{"listen":[":8080"],"routes":[
		{"handle":[{"handler":"bearer_auth","issuer":%q,"introspect":{"client_id":"gateway","client_secret":"gateway-secret"}},
		           {"handler":"static_response","body":"ok"}]}]}}}}}`, as.Issuer()+"/")
	path := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runDoctorCLI(t, nil, "", "--config", path)
	expectExit(t, r, 1)
	if !strings.Contains(r.stdout, "check: set issuer to exactly the issuer in the server's metadata") {
		t.Errorf("no issuer hint:\n%s", r.stdout)
	}
	golden(t, "issuer_mismatch.txt", newDoctorNormalizer(t, as, path).apply(r.stdout))
}

// The credentials check names the aud of the gateway's client assertions
// and why it is that value: the endpoint URL without an issuer (issue 10
// item 10), else the issuer, unless assertion_audience is configured — in
// the text and in --json, on success and on failure.
func TestDoctorShowsTheAssertionAudience(t *testing.T) {
	pk, keyFile := gatewayKey(t)
	as := testas.Start(t, testas.WithClients(testas.Client{ID: "gw-key", PublicKey: &pk.PublicKey, KeyID: "gw-1", CanIntrospect: true}))
	front := newEndpointAudienceFront(t, as, "gw-key", "gw-1", &pk.PublicKey)
	block := func(issuerLine, introspectLine string) string {
		return fmt.Sprintf(`	bearer_auth {
		%s
		introspect {
			%s
			client_id gw-key
			auth_method private_key_jwt
			private_key %s gw-1
		}
	}
	respond "ok"
`, issuerLine, introspectLine, keyFile)
	}
	for _, tc := range []struct {
		name, issuerLine, introspectLine string
		code                             int
		aud, source                      string
		golden                           string
	}{
		{name: "endpoint only", introspectLine: "endpoint " + front.url, code: 0,
			aud: front.url, source: "endpoint URL", golden: "assertion_audience_endpoint.txt"},
		{name: "issuer", issuerLine: "issuer " + as.Issuer(), code: 0,
			aud: as.Issuer(), source: "issuer"},
		{name: "configured, refused", issuerLine: "issuer " + as.Issuer(), introspectLine: "assertion_audience " + as.IntrospectionURL(), code: 1,
			aud: as.IntrospectionURL(), source: "configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeDoctorCaddyfile(t, block(tc.issuerLine, tc.introspectLine))
			r := runDoctorCLI(t, nil, "", "--config", cfg)
			expectExit(t, r, tc.code)
			want := fmt.Sprintf("assertion aud %s (%s)", tc.aud, tc.source)
			var line string
			for _, l := range strings.Split(r.stdout, "\n") {
				if strings.Contains(l, " credentials ") {
					line = l
				}
			}
			if !strings.Contains(line, want) {
				t.Errorf("credentials line %q does not say %q\n%s", line, want, r.stdout)
			}
			if tc.golden != "" {
				n := newDoctorNormalizer(t, as, cfg)
				n.add(front.url, "http://FRONT/oauth2/v1/introspect")
				golden(t, tc.golden, n.apply(r.stdout))
			}

			r = runDoctorCLI(t, nil, "", "--config", cfg, "--json")
			expectExit(t, r, tc.code)
			var doc diagnose.Report
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
				t.Fatalf("--json: %v\n%s", err, r.stdout)
			}
			var cred *diagnose.Check
			for _, c := range doc.Blocks[0].Checks {
				if c.Name == diagnose.CheckCredentials {
					cred = c
				}
			}
			if cred == nil || cred.Data["assertion_audience"] != tc.aud || cred.Data["assertion_audience_source"] != tc.source {
				t.Errorf("credentials check data: %+v", cred)
			}
		})
	}
}
