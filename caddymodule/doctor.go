package caddymodule

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tokengate/tokengate/cache"
	"github.com/tokengate/tokengate/introspect"
)

// The doctor: `caddy bearer-auth doctor` loads a config the way `caddy run`
// does, finds every bearer_auth handler in it, and checks each one against its
// authorization server with the gateway's own code (the same discovery,
// key-set, introspection client and validator that Provision builds).

// Bounds and thresholds of the doctor.
const (
	// doctorStepTimeout bounds every network step (discovery, JWKS fetch,
	// one introspection, one token decision).
	doctorStepTimeout = 10 * time.Second
	// Clock offsets up to doctorClockOK pass silently (the Date header has a
	// resolution of one second); up to the fail threshold they warn.
	doctorClockOK = 2 * time.Second
	// doctorClockFail is the largest tolerated offset: the default JWT
	// leeway, and more than most authorization servers allow on a client
	// assertion's iat. A smaller configured jwt leeway lowers it.
	doctorClockFail = 30 * time.Second
)

// Check statuses. Only fail makes the exit code non-zero.
const (
	statusPass = "pass"
	statusWarn = "warn"
	statusFail = "fail"
	statusSkip = "skip"
)

// Check names, in the order they run (also the JSON "name" values).
const (
	checkConfig          = "config"
	checkDiscovery       = "discovery"
	checkJWKS            = "jwks"
	checkCredentials     = "credentials"
	checkClock           = "clock"
	checkTokenSyntax     = "token_syntax"
	checkTokenValidation = "token_validation"
	checkTokenPolicy     = "token_policy"
	checkDecision        = "decision"
)

// doctorReportVersion is the "version" of the --json document; it changes
// only when a field is removed or changes meaning.
const doctorReportVersion = 1

var errDoctorFailed = errors.New("bearer-auth doctor: some checks failed")

func init() {
	doctorCommand = newDoctorCommand
}

func newDoctorCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "doctor [--config <path>] [--adapter <name>] [--token <token>|-] [--json]",
		Short: "Checks every bearer_auth block of a config against its authorization server",
		Long: `
Loads a config like "caddy run" does (--config, default ./Caddyfile;
--adapter, default caddyfile for a Caddyfile), finds every bearer_auth
handler in it (at any depth of routes and subroutes), and checks each one:

  config       the block is valid (placeholders such as {env.X} resolved
               from this environment, as at load time)
  discovery    the issuer's metadata (RFC 8414, then OpenID Connect): which
               URL answered, and that it names the configured issuer
  jwks         the JWKS (jwks_url, jwks_file, or the discovered jwks_uri)
               can be loaded, and how many usable keys it has
  credentials  the gateway's own client credentials: a random token is
               introspected and must come back active:false, which proves
               the authorization server accepted the gateway's credentials
               (some servers answer active:false to any client that may not
               introspect; --token with a live token proves the rest)
  clock        this host's clock against the authorization server's Date
               header: more than 30s apart (or the jwt leeway, if smaller)
               fails, more than 2s warns

With --token, it also explains what the gateway would decide for that token
and why: its syntax, whether it is JWT-shaped or opaque and so which path
checks it, the verification or introspection result, the route's policy
(audience, clients, scopes, any_scope), and the final decision: the status,
error code and WWW-Authenticate header the client would get. The token may be
given bare or as a whole "Bearer <token>" value; "--token -" reads it from
standard input (keeps it out of the process list). The token itself is never
printed, only its fingerprint, the same one the gateway logs.

The doctor makes real calls to the authorization servers, each bounded by
10s. It does not use the shared Redis cache tier.

--json writes one JSON document (a stable format with a "version" member)
instead of the human-readable report.

Exit status: 0 when no check failed (warnings and skipped checks are fine),
1 when any check failed (including a token the gateway would reject), the
config could not be loaded, or it has no bearer_auth handler.`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
	}
	f := c.Flags()
	f.StringP("config", "c", "", "Configuration file (default: ./Caddyfile)")
	f.StringP("adapter", "a", "", "Name of config adapter to apply")
	f.String("token", "", `A bearer token to explain ("-" reads it from stdin)`)
	f.Bool("json", false, "Write a JSON document instead of text")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		configFile, _ := cmd.Flags().GetString("config")
		adapter, _ := cmd.Flags().GetString("adapter")
		asJSON, _ := cmd.Flags().GetBool("json")
		opts := doctorOptions{}
		if cmd.Flags().Changed("token") {
			tok, _ := cmd.Flags().GetString("token")
			if tok == "-" {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
				if err != nil {
					return fmt.Errorf("reading the token from stdin: %w", err)
				}
				tok = strings.TrimSpace(string(b))
			}
			opts.token, opts.haveToken = tok, true
		}
		out := cmd.OutOrStdout()
		rep := runDoctorOnFile(cmd.Context(), configFile, adapter, opts)
		if asJSON {
			if err := rep.writeJSON(out); err != nil {
				return err
			}
		} else {
			rep.writeText(out)
		}
		if !rep.OK {
			// The report said it all; exit 1 without cobra's "Error:" line.
			cmd.SilenceErrors = true
			return errDoctorFailed
		}
		return nil
	}
	return c
}

type doctorOptions struct {
	token     string
	haveToken bool
	// now is the doctor's clock (tests may inject one). Default time.Now.
	now func() time.Time
}

// doctorReport is the whole result; its JSON form is the --json output.
type doctorReport struct {
	Version    int            `json:"version"`
	ConfigFile string         `json:"config_file"`
	Adapter    string         `json:"adapter"`
	OK         bool           `json:"ok"`
	Error      string         `json:"error,omitempty"`
	Summary    doctorSummary  `json:"summary"`
	Blocks     []*doctorBlock `json:"blocks"`
}

type doctorSummary struct {
	Pass int `json:"pass"`
	Warn int `json:"warn"`
	Fail int `json:"fail"`
	Skip int `json:"skip"`
}

// doctorBlock is one bearer_auth handler of the config.
type doctorBlock struct {
	// Name is "<server>#<index>": the server's name in the JSON config
	// (srv0, ... for a Caddyfile) and the handler's position among the
	// server's bearer_auth handlers, in config order.
	Name   string `json:"name"`
	Server string `json:"server"`
	Index  int    `json:"index"`
	// Path is the JSON pointer of the handler in the config.
	Path string `json:"path"`
	// Hosts and Paths are the matchers of the routes around the handler.
	Hosts  []string `json:"hosts,omitempty"`
	Paths  []string `json:"paths,omitempty"`
	Issuer string   `json:"issuer,omitempty"`
	OK     bool     `json:"ok"`
	// TokenFingerprint identifies the --token in the gateway's logs.
	TokenFingerprint string         `json:"token_fingerprint,omitempty"`
	Checks           []*doctorCheck `json:"checks"`
}

// doctorCheck is one line of the report.
type doctorCheck struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	// Detail says what was found, on one line.
	Detail string `json:"detail"`
	// Hint says what to check; set on failures and warnings.
	Hint string `json:"hint,omitempty"`
	// Data holds the check's findings for scripts (URLs, counts, offsets,
	// the decision's status and error code...).
	Data map[string]any `json:"data,omitempty"`
}

func runDoctorOnFile(ctx context.Context, configFile, adapter string, opts doctorOptions) *doctorReport {
	rep := &doctorReport{Version: doctorReportVersion, ConfigFile: configFile, Adapter: adapter, Blocks: []*doctorBlock{}}
	cfg, file, adapterUsed, err := caddycmd.LoadConfig(configFile, adapter)
	if file != "" {
		rep.ConfigFile = file
	}
	if adapterUsed != "" {
		rep.Adapter = adapterUsed
	}
	switch {
	case err != nil:
		rep.Error = err.Error()
		return rep
	case len(cfg) == 0:
		rep.Error = "no config: give --config, or run in a directory with a Caddyfile"
		return rep
	}
	if ctx == nil {
		ctx = context.Background()
	}
	return runDoctor(ctx, rep, cfg, opts)
}

// runDoctor checks every bearer_auth handler of the JSON config cfg.
func runDoctor(ctx context.Context, rep *doctorReport, cfg []byte, opts doctorOptions) *doctorReport {
	if opts.now == nil {
		opts.now = time.Now
	}
	found, err := findBearerAuth(cfg)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	if len(found) == 0 {
		rep.Error = "no bearer_auth handler in this config"
		return rep
	}
	rep.OK = true
	for _, f := range found {
		b := (&blockDoctor{ctx: ctx, opts: opts, found: f}).run()
		rep.Blocks = append(rep.Blocks, b)
		for _, c := range b.Checks {
			switch c.Status {
			case statusPass:
				rep.Summary.Pass++
			case statusWarn:
				rep.Summary.Warn++
			case statusFail:
				rep.Summary.Fail++
			case statusSkip:
				rep.Summary.Skip++
			}
		}
		rep.OK = rep.OK && b.OK
	}
	return rep
}

// foundHandler is a bearer_auth handler located in a JSON config.
type foundHandler struct {
	server string
	index  int
	path   string
	hosts  []string
	paths  []string
	raw    []byte // the handler's JSON without its "handler" key
}

// findBearerAuth walks the whole config generically (routes, handle,
// subroute routes, any nesting) for objects with "handler":"bearer_auth".
// Object members are visited in sorted order so the result is stable.
func findBearerAuth(cfg []byte) ([]foundHandler, error) {
	dec := json.NewDecoder(bytes.NewReader(cfg))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("config is not valid JSON: %w", err)
	}
	var out []foundHandler
	counts := map[string]int{}
	var walk func(v any, ptr []string, server string, hosts, paths []string) error
	walk = func(v any, ptr []string, server string, hosts, paths []string) error {
		switch t := v.(type) {
		case map[string]any:
			if hs, ps := routeMatchers(t["match"]); len(hs) > 0 || len(ps) > 0 {
				if len(hs) > 0 {
					hosts = hs
				}
				if len(ps) > 0 {
					paths = ps
				}
			}
			if t["handler"] == "bearer_auth" {
				obj := make(map[string]any, len(t))
				for k, v := range t {
					if k != "handler" {
						obj[k] = v
					}
				}
				raw, err := json.Marshal(obj)
				if err != nil {
					return err
				}
				name := server
				if name == "" {
					name = "(no server)"
				}
				out = append(out, foundHandler{server: name, index: counts[name], path: jsonPointer(ptr),
					hosts: hosts, paths: paths, raw: raw})
				counts[name]++
				return nil
			}
			keys := make([]string, 0, len(t))
			for k := range t {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				s := server
				if len(ptr) == 3 && ptr[0] == "apps" && ptr[1] == "http" && ptr[2] == "servers" {
					s = k
				}
				if err := walk(t[k], append(slices.Clip(ptr), k), s, hosts, paths); err != nil {
					return err
				}
			}
		case []any:
			for i, e := range t {
				if err := walk(e, append(slices.Clip(ptr), strconv.Itoa(i)), server, hosts, paths); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, nil, "", nil, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// routeMatchers collects the host and path matchers of a route's "match"
// (a list of matcher sets).
func routeMatchers(m any) (hosts, paths []string) {
	sets, _ := m.([]any)
	for _, s := range sets {
		set, _ := s.(map[string]any)
		for _, h := range asStrings(set["host"]) {
			if !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
		for _, p := range asStrings(set["path"]) {
			if !slices.Contains(paths, p) {
				paths = append(paths, p)
			}
		}
	}
	return hosts, paths
}

func asStrings(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, e := range list {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func jsonPointer(ptr []string) string {
	var b strings.Builder
	for _, p := range ptr {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(p))
	}
	return b.String()
}

// doctorHandler decodes a handler and prepares it as Provision does, without
// any I/O: placeholders, defaults, Validate, and the per-route fields
// ServeHTTP needs. Each call returns an independent copy.
func doctorHandler(raw []byte) (*Handler, error) {
	h := new(Handler)
	if err := caddy.StrictUnmarshalJSON(raw, h); err != nil {
		return nil, fmt.Errorf("bearer_auth: decoding: %w", err)
	}
	if err := h.prepare(); err != nil {
		return nil, err
	}
	h.logger = zap.NewNop()
	h.metrics = getMetrics()
	return h, nil
}

// blockDoctor runs the checks of one handler.
type blockDoctor struct {
	ctx   context.Context
	opts  doctorOptions
	found foundHandler
	block *doctorBlock

	h       *Handler
	md      *introspect.Metadata
	keysAt  string // where the jwt keys come from, for the token explanation
	dates   dateRecorder
	skipAll string // reason to skip the remaining checks
}

func (d *blockDoctor) run() *doctorBlock {
	f := d.found
	d.block = &doctorBlock{Name: fmt.Sprintf("%s#%d", f.server, f.index), Server: f.server, Index: f.index,
		Path: f.path, Hosts: f.hosts, Paths: f.paths, Checks: []*doctorCheck{}}
	d.dates.now = d.opts.now
	d.checkConfig()
	d.checkDiscovery()
	d.checkJWKS()
	d.checkCredentials()
	d.checkClock()
	if d.opts.haveToken {
		d.explainToken()
	}
	d.block.OK = true
	for _, c := range d.block.Checks {
		if c.Status == statusFail {
			d.block.OK = false
		}
	}
	return d.block
}

func (d *blockDoctor) add(name, status, detail, hint string, data map[string]any) *doctorCheck {
	c := &doctorCheck{Name: name, Status: status, Detail: oneLine(detail), Hint: oneLine(hint), Data: data}
	d.block.Checks = append(d.block.Checks, c)
	return c
}

// failed reports whether a check of this block has failed so far.
func (d *blockDoctor) failed() bool {
	return slices.ContainsFunc(d.block.Checks, func(c *doctorCheck) bool { return c.Status == statusFail })
}

func (d *blockDoctor) skip(name, reason string) {
	d.add(name, statusSkip, reason, "", nil)
}

func (d *blockDoctor) stepContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(d.ctx, doctorStepTimeout)
}

func (d *blockDoctor) checkConfig() {
	// The issuer is shown even when the block is invalid, as written.
	var peek struct {
		Issuer string `json:"issuer"`
	}
	_ = json.Unmarshal(d.found.raw, &peek)
	d.block.Issuer = peek.Issuer
	h, err := doctorHandler(d.found.raw)
	if err != nil {
		d.add(checkConfig, statusFail, err.Error(),
			"fix the sub-directive named above; Caddy would refuse to load this config", nil)
		d.skipAll = "skipped: the config is invalid"
		return
	}
	d.h = h
	d.block.Issuer = h.Issuer
	var parts []string
	data := map[string]any{"realm": h.Realm}
	if i := h.Introspect; i != nil {
		parts = append(parts, fmt.Sprintf("introspect as %s (%s)", i.ClientID, i.AuthMethod))
		data["introspect"] = map[string]any{"client_id": i.ClientID, "auth_method": i.AuthMethod, "endpoint": i.Endpoint}
	}
	if j := h.JWT; j != nil {
		src := "discovered jwks_uri"
		switch {
		case j.JWKSFile != "":
			src = "jwks_file " + j.JWKSFile
		case j.JWKSURL != "":
			src = "jwks_url"
		}
		s := "jwt (" + src
		if len(j.Types) > 0 {
			s += "; typ " + strings.Join(j.Types, " ")
		}
		parts = append(parts, s+")")
		data["jwt"] = map[string]any{"jwks_url": j.JWKSURL, "jwks_file": j.JWKSFile, "typ": j.Types}
	}
	for _, p := range []struct {
		name string
		v    []string
	}{{"audience", h.Audience}, {"scopes", h.Scopes}, {"any_scope", h.AnyScope}, {"clients", h.Clients}} {
		if len(p.v) > 0 {
			parts = append(parts, p.name+" "+strings.Join(p.v, " "))
			data[p.name] = p.v
		}
	}
	d.add(checkConfig, statusPass, strings.Join(parts, "; "), "", data)
}

// needsDiscovery mirrors newPoolEntry: discovery is needed for an endpoint
// or a key set that is not configured.
func (d *blockDoctor) needsDiscovery() bool {
	h := d.h
	return h.Introspect != nil && h.Introspect.Endpoint == "" ||
		h.JWT != nil && h.JWT.JWKSURL == "" && h.JWT.JWKSFile == ""
}

func (d *blockDoctor) checkDiscovery() {
	if d.skipAll != "" {
		d.skip(checkDiscovery, d.skipAll)
		return
	}
	if d.h.Issuer == "" {
		d.skip(checkDiscovery, "no issuer configured")
		return
	}
	ctx, cancel := d.stepContext()
	defer cancel()
	md, err := introspect.Discover(ctx, d.dates.client(introspect.NewHTTPClient(doctorStepTimeout)), d.h.Issuer)
	if err != nil {
		hint := "check that the issuer is reachable from this host (URL, DNS, firewall, proxy) and is the authorization server's issuer identifier"
		if strings.Contains(err.Error(), "names issuer") {
			hint = "set issuer to exactly the issuer in the server's metadata (scheme, host, path, trailing slash; for a multi-realm server, the realm's issuer)"
		}
		status := statusFail
		detail := err.Error()
		if !d.needsDiscovery() {
			// The gateway will not discover (endpoints are explicit), but
			// the issuer still has to match iss in tokens.
			status = statusWarn
			detail = "not needed by this block (endpoints are explicit), but " + detail
		}
		d.add(checkDiscovery, status, detail, hint, nil)
		return
	}
	d.md = md
	d.add(checkDiscovery, statusPass, md.Source+" (issuer matches)", "", map[string]any{
		"url": md.Source, "issuer": md.Issuer,
		"introspection_endpoint": md.IntrospectionEndpoint, "jwks_uri": md.JWKSURI,
		"introspection_endpoint_auth_methods_supported": md.IntrospectionAuthMethods,
	})
}

func (d *blockDoctor) checkJWKS() {
	switch {
	case d.skipAll != "":
		d.skip(checkJWKS, d.skipAll)
		return
	case d.h.JWT == nil:
		d.skip(checkJWKS, "no jwt block")
		return
	}
	j := d.h.JWT
	if j.JWKSFile != "" {
		ks, err := introspect.LoadKeySetFile(j.JWKSFile)
		if err != nil {
			d.add(checkJWKS, statusFail, err.Error(),
				"check jwks_file: it must hold a JWK Set, a JWK, or PEM public keys the gateway can read", nil)
			return
		}
		d.keysAt = j.JWKSFile
		detail := fmt.Sprintf("%s in %s (%s)", plural(ks.Len(), "key"), j.JWKSFile, algList(ks.Algorithms()))
		data := map[string]any{"file": j.JWKSFile, "keys": ks.Len(), "algorithms": ks.Algorithms()}
		if sk := ks.Skipped(); len(sk) > 0 {
			data["skipped"] = sk
		}
		d.add(checkJWKS, statusPass, detail, "", data)
		return
	}
	u := j.JWKSURL
	if u == "" {
		switch {
		case d.md == nil:
			d.skip(checkJWKS, "skipped: jwks_uri unknown (discovery failed)")
			return
		case d.md.JWKSURI == "":
			d.add(checkJWKS, statusFail, "the metadata of "+d.h.Issuer+" has no jwks_uri", "set jwt.jwks_url", nil)
			return
		}
		u = d.md.JWKSURI
	}
	d.keysAt = u
	ctx, cancel := d.stepContext()
	defer cancel()
	rks, err := introspect.NewRemoteKeySet(ctx, introspect.RemoteKeySetConfig{
		URL:        u,
		HTTPClient: d.dates.client(introspect.NewHTTPClient(doctorStepTimeout)),
	})
	if err == nil {
		defer rks.Close()
		err = rks.Refresh(ctx)
	}
	if err != nil {
		d.add(checkJWKS, statusFail, err.Error(),
			"check that the JWKS URL is reachable from this host and serves a JWK Set (status 200, application/json) with at least one signature key",
			map[string]any{"url": u})
		return
	}
	d.add(checkJWKS, statusPass, fmt.Sprintf("%s at %s (%s)", plural(rks.Len(), "key"), u, algList(rks.Algorithms())), "",
		map[string]any{"url": u, "keys": rks.Len(), "algorithms": rks.Algorithms()})
}

func (d *blockDoctor) checkCredentials() {
	switch {
	case d.skipAll != "":
		d.skip(checkCredentials, d.skipAll)
		return
	case d.h.Introspect == nil:
		d.skip(checkCredentials, "no introspect block")
		return
	}
	endpoint := d.h.Introspect.Endpoint
	if endpoint == "" {
		switch {
		case d.md == nil:
			d.skip(checkCredentials, "skipped: introspection endpoint unknown (discovery failed)")
			return
		case d.md.IntrospectionEndpoint == "":
			d.add(checkCredentials, statusFail, "the metadata of "+d.h.Issuer+" has no introspection_endpoint",
				"set introspect.endpoint", nil)
			return
		}
		endpoint = d.md.IntrospectionEndpoint
	}
	// Build the gateway's own introspection client (whatever the auth
	// method) through newPoolEntry, with the endpoint pinned and no keys or
	// shared cache to load.
	hc, err := doctorHandler(d.found.raw)
	if err != nil {
		d.add(checkCredentials, statusFail, err.Error(), "", nil)
		return
	}
	hc.JWT = nil
	hc.Introspect.Endpoint = endpoint
	hc.Cache.Redis = ""
	data := map[string]any{"endpoint": endpoint, "client_id": hc.Introspect.ClientID, "auth_method": hc.Introspect.AuthMethod}
	e, err := hc.newPoolEntry()
	if err != nil {
		d.add(checkCredentials, statusFail, err.Error(), "the gateway could not build its client credentials: check the introspect block", data)
		return
	}
	defer func() { _ = e.Destruct() }()
	intro := e.validator.Introspector()
	intro.HTTPClient = d.dates.client(intro.HTTPClient)

	ctx, cancel := d.stepContext()
	defer cancel()
	_, err = intro.Introspect(ctx, randomDummyToken())
	who := fmt.Sprintf("%s as %s", hc.Introspect.AuthMethod, hc.Introspect.ClientID)
	// A wrong aud is the most common reason a server refuses an assertion,
	// and its default depends on whether an issuer is set: say which aud
	// was signed (asked of the authenticator that signed it) and why.
	audNote := ""
	if at, ok := introspect.AssertionTargetOf(intro.Auth, intro.Endpoint); ok {
		what := "assertion"
		if at.Endpoint != intro.Endpoint {
			what = "token request's assertion" // auth_method bearer
		}
		audNote = fmt.Sprintf("; %s aud %s (%s)", what, at.Audience, at.Source)
		data["assertion_audience"], data["assertion_audience_source"] = at.Audience, at.Source
		data["assertion_endpoint"] = at.Endpoint
	}
	if err == nil {
		d.add(checkCredentials, statusFail, endpoint+" said a random token is active"+audNote,
			"the endpoint does not check tokens: is it really the authorization server's introspection endpoint?", data)
		return
	}
	e2 := introspect.AsError(err)
	if e2.Code == introspect.CodeInvalidToken {
		data["answer"] = "active:false"
		d.add(checkCredentials, statusPass,
			fmt.Sprintf("%s accepted by %s (a random token came back active:false)%s", who, endpoint, audNote), "", data)
		return
	}
	var ase *introspect.ASError
	if errors.As(err, &ase) {
		data["as_status"], data["as_error"], data["as_error_description"] = ase.Status, ase.Code, ase.Description
		detail := ase.Code
		if detail == "" {
			detail = fmt.Sprintf("HTTP %d", ase.Status)
		}
		if ase.Description != "" {
			detail += " (" + ase.Description + ")"
		}
		at := ase.Endpoint // the token endpoint, for auth_method bearer
		if at == "" {
			at = endpoint
		}
		detail += fmt.Sprintf(" from %s for %s%s", at, who, audNote)
		hint := ase.Hint()
		// (bearer is not a client authentication method the metadata
		// would list: the gateway's own token is the credential.)
		if ms := d.supportedAuthMethods(); len(ms) > 0 && hc.Introspect.AuthMethod != "bearer" && !slices.Contains(ms, hc.Introspect.AuthMethod) {
			hint += fmt.Sprintf("; the server's metadata lists introspection auth methods %s, not %s", strings.Join(ms, " "), hc.Introspect.AuthMethod)
		}
		d.add(checkCredentials, statusFail, detail, hint, data)
		return
	}
	detail := e2.Reason
	if e2.Err != nil {
		detail = e2.Err.Error()
	}
	detail += audNote
	data["reason"] = e2.Reason
	hint := e2.Hint
	if hint == "" {
		hint = "check that the introspection endpoint is reachable from this host"
	}
	d.add(checkCredentials, statusFail, detail, hint, data)
}

func (d *blockDoctor) supportedAuthMethods() []string {
	if d.md == nil {
		return nil
	}
	return d.md.IntrospectionAuthMethods
}

// randomDummyToken is a token no server can know: introspecting it proves
// only that the server accepted the gateway's credentials.
func randomDummyToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return "tokengate-doctor-" + base64.RawURLEncoding.EncodeToString(b[:])
}

func (d *blockDoctor) checkClock() {
	if d.skipAll != "" {
		d.skip(checkClock, d.skipAll)
		return
	}
	s, ok := d.dates.best()
	if !ok {
		d.skip(checkClock, "skipped: no answer from the authorization server carried a Date header")
		return
	}
	offset := s.offset()
	limit := doctorClockFail
	if d.h.JWT != nil && d.h.JWT.Leeway > 0 && time.Duration(d.h.JWT.Leeway) < limit {
		limit = time.Duration(d.h.JWT.Leeway)
	}
	rounded := offset.Round(time.Second)
	data := map[string]any{"offset_seconds": math.Round(offset.Seconds()*10) / 10, "source": s.url, "fail_above_seconds": limit.Seconds()}
	var detail string
	switch {
	case rounded > 0:
		detail = fmt.Sprintf("offset %s: the authorization server's clock is %s ahead of this host's (Date of %s)", signed(rounded), rounded, s.url)
	case rounded < 0:
		detail = fmt.Sprintf("offset %s: the authorization server's clock is %s behind this host's (Date of %s)", signed(rounded), -rounded, s.url)
	default:
		detail = fmt.Sprintf("offset %s: in step with the authorization server (Date of %s)", signed(rounded), s.url)
	}
	abs := offset
	if abs < 0 {
		abs = -abs
	}
	const ntp = "synchronise this host's clock with NTP (timedatectl status, chronyc tracking), and the authorization server's"
	switch {
	case abs > limit:
		d.add(checkClock, statusFail, detail, fmt.Sprintf("%s: beyond %s, valid JWTs fail exp/nbf/iat and the server refuses client assertions ('iat' timestamp check failed)", ntp, limit), data)
	case abs > doctorClockOK:
		d.add(checkClock, statusWarn, detail, fmt.Sprintf("%s: tolerated up to %s, but drifting clocks break JWT and client-assertion time checks", ntp, limit), data)
	default:
		d.add(checkClock, statusPass, detail, "", data)
	}
}

// oneLine keeps a detail on one line: joined errors (discovery tries two
// URLs) come with newlines.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), "; ")
}

func signed(d time.Duration) string {
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

// explainToken says what the gateway would decide for --token, step by step,
// and the response the client would get (from the real ServeHTTP).
func (d *blockDoctor) explainToken() {
	steps := []string{checkTokenSyntax, checkTokenValidation, checkTokenPolicy, checkDecision}
	skipRest := func(from int, reason string) {
		for _, n := range steps[from:] {
			d.skip(n, reason)
		}
	}
	if d.skipAll != "" {
		d.block.TokenFingerprint = cache.NewKeyer(nil).Key(d.opts.token).Fingerprint()
		skipRest(0, d.skipAll)
		return
	}
	var secret []byte
	if d.h.Cache.KeySecret != "" {
		secret = []byte(d.h.Cache.KeySecret)
	}
	keyer := cache.NewKeyer(secret)

	// 1. Syntax, with the gateway's own extractor on a real request.
	header := d.opts.token
	if !hasBearerScheme(header) {
		header = "Bearer " + header
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", header)
	tok, _, xerr := d.h.extractor.Extract(req)
	if xerr != nil || tok == "" {
		d.block.TokenFingerprint = keyer.Key(d.opts.token).Fingerprint()
	} else {
		d.block.TokenFingerprint = keyer.Key(tok).Fingerprint()
	}
	switch {
	case xerr != nil:
		d.add(checkTokenSyntax, statusFail, fmt.Sprintf("invalid_request: %s (%s)", xerr.Description, xerr.Reason),
			"send exactly \"Authorization: Bearer <token>\" with a token of the RFC 6750 b64token characters (A-Z a-z 0-9 - . _ ~ + /, then = padding), no spaces or quotes", map[string]any{"reason": xerr.Reason})
	case tok == "":
		d.add(checkTokenSyntax, statusFail, "no token", "give the token to --token", nil)
	default:
		shape := "opaque"
		if introspect.LooksLikeJWT(tok) {
			shape = "JWT-shaped"
		}
		d.add(checkTokenSyntax, statusPass, fmt.Sprintf("b64token, %d bytes, %s", len(tok), shape), "",
			map[string]any{"length": len(tok), "jwt": shape != "opaque"})
	}

	// The gateway's whole validator, as Provision builds it (shared cache
	// tier left out: the doctor asks afresh and writes nothing shared).
	ht, err := doctorHandler(d.found.raw)
	if err == nil {
		ht.Cache.Redis = ""
		var e *poolEntry
		if e, err = ht.newPoolEntry(); err == nil {
			defer func() { _ = e.Destruct() }()
			ht.entry = e
		}
	}
	if err != nil {
		if xerr == nil && tok != "" {
			detail := "the gateway cannot load this block: " + err.Error()
			if d.failed() {
				detail = "the gateway cannot load this block (see the failures above)"
			}
			d.add(checkTokenValidation, statusFail, detail, "fix the failures above first", map[string]any{"load_error": err.Error()})
			skipRest(2, "skipped: the gateway cannot load this block")
		} else {
			skipRest(1, "skipped: the gateway cannot load this block")
		}
		return
	}

	// 2. Path and validation.
	var dec *introspect.Decision
	if xerr == nil && tok != "" {
		path, pathData := d.tokenPath(ht, tok)
		ctx, cancel := d.stepContext()
		var verr error
		dec, _, verr = ht.entry.validator.Validate(ctx, tok)
		cancel()
		if verr != nil {
			ie := introspect.AsError(verr)
			pathData["error"], pathData["reason"] = string(ie.Code), ie.Reason
			detail := fmt.Sprintf("%s: %s: %s (%s)", path, ie.Code, ie.Description, ie.Reason)
			if ie.Code == introspect.CodeUnavailable && ie.Err != nil {
				// The gateway's own trouble: what its error log would say.
				detail += ": " + ie.Err.Error()
				pathData["cause"] = ie.Err.Error()
			}
			d.add(checkTokenValidation, statusFail, detail, validationHint(ie), pathData)
			dec = nil
		} else {
			for k, v := range decisionData(dec) {
				pathData[k] = v
			}
			d.add(checkTokenValidation, statusPass, path+": "+describeDecision(dec), "", pathData)
		}
	} else {
		d.skip(checkTokenValidation, "skipped: no well-formed token")
	}

	// 3. Policy.
	if dec != nil {
		if perr := ht.policy.Authorize(dec); perr != nil {
			d.add(checkTokenPolicy, statusFail, fmt.Sprintf("%s: %s", perr.Code, perr.Description)+policyHave(ht, dec, perr),
				policyHint(ht, dec, perr), map[string]any{"error": string(perr.Code), "reason": perr.Reason})
		} else {
			d.add(checkTokenPolicy, statusPass, policySummary(ht), "", nil)
		}
	} else {
		d.skip(checkTokenPolicy, "skipped: the token is not valid")
	}

	// 4. The response the client would get, from the real ServeHTTP.
	rec := httptest.NewRecorder()
	ctx, cancel := d.stepContext()
	defer cancel()
	req = httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	req.Header.Set("Authorization", header)
	passed := false
	_ = ht.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		passed = true
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	res := rec.Result()
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Scope       string `json:"scope"`
	}
	_ = json.NewDecoder(res.Body).Decode(&body)
	_ = res.Body.Close()
	data := map[string]any{"status": res.StatusCode}
	if passed {
		user := ""
		if dec != nil {
			user = dec.UserID()
		}
		data["user_id"] = user
		d.add(checkDecision, statusPass, fmt.Sprintf("%d: allowed through to the next handler as %s", res.StatusCode, orDash(user)), "", data)
		return
	}
	www := res.Header.Get("WWW-Authenticate")
	data["error"], data["www_authenticate"] = body.Error, www
	detail := fmt.Sprintf("%d %s", res.StatusCode, orDash(body.Error))
	if ra := res.Header.Get("Retry-After"); ra != "" {
		data["retry_after"] = ra
		detail += ", Retry-After " + ra
	}
	if www != "" {
		detail += ", WWW-Authenticate: " + www
	}
	hint := ""
	if res.StatusCode == http.StatusServiceUnavailable {
		hint = "the gateway itself could not decide (the token is not blamed): see the failures above"
	}
	d.add(checkDecision, statusFail, detail, hint, data)
}

func hasBearerScheme(v string) bool {
	return len(v) >= 6 && strings.EqualFold(v[:6], "bearer") && (len(v) == 6 || v[6] == ' ' || v[6] == '\t')
}

// tokenPath says which path the validator takes for tok (mirroring
// Validator.check), with the JWT header when the token is JWT-shaped.
func (d *blockDoctor) tokenPath(h *Handler, tok string) (string, map[string]any) {
	data := map[string]any{}
	v := h.entry.validator
	jwtShaped := introspect.LooksLikeJWT(tok)
	var desc string
	if jwtShaped {
		hdr := jwtSegment(tok, 0)
		iss, _ := jwtSegment(tok, 1)["iss"].(string)
		var parts []string
		for _, k := range []string{"alg", "kid", "typ"} {
			if s, ok := hdr[k].(string); ok {
				parts = append(parts, k+" "+shorten(s))
				data[k] = s
			} else {
				parts = append(parts, "no "+k)
			}
		}
		desc = "JWT (" + strings.Join(parts, ", ") + ")"
		if v.KeySet() != nil && v.PathOf(tok) == introspect.PathIntrospection {
			data["path"] = "introspection"
			data["iss"] = iss
			return fmt.Sprintf("%s from another issuer (iss %q), so introspected at %s", desc, shorten(iss), v.Introspector().Endpoint), data
		}
	} else {
		desc = "opaque token"
	}
	switch v.PathOf(tok) {
	case introspect.PathJWT, introspect.PathJWTThenIntrospection:
		data["path"] = "jwt"
		s := desc + " verified locally"
		if d.keysAt != "" {
			s += " against " + d.keysAt
		}
		if v.PathOf(tok) == introspect.PathJWTThenIntrospection {
			s += ", then introspected at " + v.Introspector().Endpoint + " (introspect_jwt)"
		}
		return s, data
	case introspect.PathNone:
		data["path"] = "jwt"
		return desc + " but only jwt is configured", data
	}
	data["path"] = "introspection"
	return desc + " introspected at " + v.Introspector().Endpoint, data
}

// jwtSegment decodes a JWT segment as a JSON object, unverified: for the
// explanation only.
func jwtSegment(tok string, i int) map[string]any {
	segs := strings.Split(tok, ".")
	if i >= len(segs) {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(segs[i])
	if err != nil {
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func shorten(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func decisionData(dec *introspect.Decision) map[string]any {
	m := map[string]any{"source": dec.Source, "sub": dec.Subject, "client_id": dec.ClientID, "scope": dec.ScopeString(), "aud": dec.Audience}
	if !dec.ExpiresAt.IsZero() {
		m["exp"] = dec.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return m
}

func describeDecision(dec *introspect.Decision) string {
	var b strings.Builder
	b.WriteString("valid")
	if dec.Subject != "" {
		b.WriteString(", sub " + dec.Subject)
	}
	if dec.ClientID != "" {
		b.WriteString(", client_id " + dec.ClientID)
	}
	fmt.Fprintf(&b, ", scope %q", dec.ScopeString())
	if len(dec.Audience) > 0 {
		b.WriteString(", aud " + strings.Join(dec.Audience, " "))
	}
	if !dec.ExpiresAt.IsZero() {
		b.WriteString(", expires " + dec.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return b.String()
}

func validationHint(e *introspect.Error) string {
	if e.Hint != "" {
		return e.Hint
	}
	switch e.Reason {
	case "inactive":
		return "the authorization server says the token is not active: expired, revoked, issued by another server or realm, or not a token at all; get a fresh one from the issuer this block trusts"
	case "expired":
		return "get a fresh token; if fresh tokens fail too, check the clocks (see the clock check)"
	case "issuer":
		return "the token comes from another issuer: get it from the issuer this block names, or fix issuer"
	case "malformed":
		return "this block verifies JWT access tokens only: configure introspect for opaque tokens, or get a JWT access token"
	}
	if e.Code == introspect.CodeUnavailable {
		return "the gateway could not decide: see the failures above"
	}
	return ""
}

func policySummary(h *Handler) string {
	var parts []string
	if len(h.Audience) > 0 {
		parts = append(parts, "audience ok")
	}
	if len(h.Clients) > 0 {
		parts = append(parts, "client allowed")
	}
	if len(h.Scopes) > 0 {
		parts = append(parts, "scopes "+strings.Join(h.Scopes, " ")+" granted")
	}
	if len(h.AnyScope) > 0 {
		parts = append(parts, "one of "+strings.Join(h.AnyScope, " ")+" granted")
	}
	if len(parts) == 0 {
		return "no audience, clients or scopes required"
	}
	return strings.Join(parts, ", ")
}

func policyHave(h *Handler, dec *introspect.Decision, e *introspect.Error) string {
	switch e.Code {
	case introspect.CodeInsufficientScope:
		return fmt.Sprintf(" (requires %q, granted %q)", e.Scope, dec.ScopeString())
	case introspect.CodeUnauthorizedClient:
		return fmt.Sprintf(" (client_id %q, allowed: %s)", dec.ClientID, strings.Join(h.Clients, " "))
	case introspect.CodeInvalidToken:
		return fmt.Sprintf(" (aud %q, audience %s)", strings.Join(dec.Audience, " "), strings.Join(h.Audience, " "))
	}
	return ""
}

func policyHint(h *Handler, dec *introspect.Decision, e *introspect.Error) string {
	switch e.Code {
	case introspect.CodeInsufficientScope:
		return fmt.Sprintf("request the token with scope %q (the client must be allowed that scope at the authorization server), or change scopes/any_scope", e.Scope)
	case introspect.CodeUnauthorizedClient:
		return fmt.Sprintf("add %q to clients if this client may use this API, or check the token was issued to the right client (and realm)", dec.ClientID)
	case introspect.CodeInvalidToken:
		return "request the token for this API's audience (the resource/audience parameter or client setting at the authorization server), or fix audience"
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func algList[T fmt.Stringer](algs []T) string {
	if len(algs) == 0 {
		return "no algorithms"
	}
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = a.String()
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// dateRecorder records the Date header of every answer from an
// authorization server, with when the request left and the answer came back.
type dateRecorder struct {
	mu      sync.Mutex
	now     func() time.Time
	samples []dateSample
}

type dateSample struct {
	url        string
	status     int
	date       time.Time
	start, end time.Time
}

// offset is the server's clock minus ours: the Date header against the
// middle of the round trip, plus half a second because Date is truncated to
// the second.
func (s dateSample) offset() time.Duration {
	mid := s.start.Add(s.end.Sub(s.start) / 2)
	return s.date.Add(500 * time.Millisecond).Sub(mid)
}

// best is the first sample (discovery before JWKS before introspection)
// whose round trip took under a second, the Date header's own resolution,
// preferring successful answers (any answer's Date would do, but "Date of"
// a 404 would puzzle a reader); failing that, the one with the shortest
// round trip.
func (r *dateRecorder) best() (dateSample, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 {
		return dateSample{}, false
	}
	for _, okOnly := range []bool{true, false} {
		for _, s := range r.samples {
			if s.end.Sub(s.start) < time.Second && (!okOnly || s.status < 400) {
				return s, true
			}
		}
	}
	b := r.samples[0]
	for _, s := range r.samples[1:] {
		if s.end.Sub(s.start) < b.end.Sub(b.start) {
			b = s
		}
	}
	return b, true
}

// client returns a copy of c whose transport records Date headers.
func (r *dateRecorder) client(c *http.Client) *http.Client {
	if c == nil {
		c = introspect.NewHTTPClient(doctorStepTimeout)
	}
	cp := *c
	base := cp.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cp.Transport = &recordingTransport{base: base, rec: r}
	return &cp
}

type recordingTransport struct {
	base http.RoundTripper
	rec  *dateRecorder
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	now := t.rec.now
	if now == nil {
		now = time.Now
	}
	start := now()
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	end := now()
	if d, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
		u := *req.URL
		u.RawQuery, u.User = "", nil
		t.rec.mu.Lock()
		t.rec.samples = append(t.rec.samples, dateSample{url: u.String(), status: resp.StatusCode, date: d, start: start, end: end})
		t.rec.mu.Unlock()
	}
	return resp, nil
}

// writeText writes the human-readable report.
func (rep *doctorReport) writeText(w io.Writer) {
	src := rep.ConfigFile
	if src == "" {
		src = "(no config file)"
	}
	if rep.Adapter != "" {
		src += " (" + rep.Adapter + " adapter)"
	}
	if rep.Error != "" {
		fmt.Fprintf(w, "tokengate doctor: %s\n  ✘ %s\n", src, rep.Error)
		return
	}
	fmt.Fprintf(w, "tokengate doctor: %s, %s\n", src, plural(len(rep.Blocks), "bearer_auth block"))
	width := 0
	for _, b := range rep.Blocks {
		for _, c := range b.Checks {
			width = max(width, len(label(c.Name)))
		}
	}
	var failed []string
	for _, b := range rep.Blocks {
		fmt.Fprintf(w, "\n%s", b.Name)
		if len(b.Hosts) > 0 || len(b.Paths) > 0 {
			fmt.Fprintf(w, "  %s", strings.TrimSpace(strings.Join(b.Hosts, " ")+" "+strings.Join(b.Paths, " ")))
		}
		if b.Issuer != "" {
			fmt.Fprintf(w, "  issuer %s", b.Issuer)
		}
		fmt.Fprintln(w)
		if b.TokenFingerprint != "" {
			fmt.Fprintf(w, "  (token fingerprint %s)\n", b.TokenFingerprint)
		}
		for _, c := range b.Checks {
			line := fmt.Sprintf("  %s %-*s  %s", statusMark(c.Status), width, label(c.Name), c.Detail)
			if c.Hint != "" && (c.Status == statusFail || c.Status == statusWarn) {
				line += " — check: " + c.Hint
			}
			fmt.Fprintln(w, line)
			if c.Status == statusFail {
				failed = append(failed, b.Name+" "+label(c.Name))
			}
		}
	}
	fmt.Fprintln(w)
	s := rep.Summary
	counts := fmt.Sprintf("%d passed, %d warnings, %d failed, %d skipped", s.Pass, s.Warn, s.Fail, s.Skip)
	if rep.OK {
		fmt.Fprintf(w, "ok: %s\n", counts)
	} else {
		fmt.Fprintf(w, "FAILED: %s (%s)\n", counts, strings.Join(failed, ", "))
	}
}

func label(name string) string { return strings.ReplaceAll(name, "_", " ") }

func statusMark(s string) string {
	switch s {
	case statusPass:
		return "✔"
	case statusWarn:
		return "!"
	case statusFail:
		return "✘"
	}
	return "-"
}

// writeJSON writes the --json document.
func (rep *doctorReport) writeJSON(w io.Writer) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
