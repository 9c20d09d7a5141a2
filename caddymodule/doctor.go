package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/introspect/diagnose"
)

// The doctor's glue: `caddy bearer-auth doctor` loads a config the way
// `caddy run` does, finds every bearer_auth handler in it, maps each to an
// introspect.Config with the handler's own prepare and introspectConfig (the
// path Provision takes), and hands it to introspect/diagnose, which runs the
// checks on one validator per block. What is checked and how the report
// reads is diagnose's; finding the blocks and running the real ServeHTTP for
// the token's decision is Caddy's, and so lives here.

var errDoctorFailed = errors.New("bearer-auth doctor: some checks failed")

func doctorCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "doctor [--config <path>] [--adapter <name>] [--token <token>|-] [--json]",
		Short: "Checks every bearer_auth block of a config against its authorization server",
		Long: `
Loads a config like "caddy run" does (--config, default ./Caddyfile;
--adapter, default caddyfile for a Caddyfile), finds every bearer_auth
handler in it (at any depth of routes and subroutes), and checks each one
with the gateway's own code: one validator per block, built exactly as the
gateway builds it when it starts.

  config       the block is valid (placeholders such as {env.X} resolved
               from this environment, as at load time)
  discovery    only when the block needs it (an endpoint or the keys are
               not configured): the issuer's metadata (RFC 8414, then
               OpenID Connect), which URL answered, and that it names the
               configured issuer
  jwks         the keys (jwks_url, jwks_file, or the discovered jwks_uri)
               can be loaded, and how many usable keys there are
  credentials  the gateway's own client credentials: a random token is
               introspected and must come back active:false, which proves
               the authorization server accepted the gateway's credentials
               (some servers answer active:false to any client that may not
               introspect; --token with a live token proves the rest)
  clock        this host's clock against the authorization server's Date
               header (of the discovery or introspection answer; else the
               doctor asks the issuer): more than 30s apart (or the leeway,
               if smaller) fails, more than 2s warns

A block with resource_metadata gets three more checks:

  resource metadata         its resource is the audience the block enforces
  resource metadata served  the document's URL (built from resource, RFC 9728
                            §3.1) answers with this block's document; no
                            answer at all only warns (the gateway may not run
                            yet, or not be reachable from here)
  authorization servers     each server the document lists answers discovery
                            (RFC 8414, then OpenID Connect), and the block's
                            issuer is among them (else a warning)

With --token, it also explains what the gateway would decide for that token
and why: its syntax, whether it is JWT-shaped or opaque and so which path
checks it, the verification or introspection result, the route's policy
(audience, clients, scopes, any_scope), and the final decision: the status,
error code and WWW-Authenticate header the client would get. The token may be
given bare or as a whole "Bearer <token>" value; "--token -" reads it from
standard input (keeps it out of the process list). The token itself is never
printed, only its fingerprint, the same one the gateway logs.

The doctor makes real calls to the authorization servers, bounded by the
gateway's startup timeouts, and by 10s each for its own. It does not use the
shared Redis cache tier.

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
		opts := diagnose.Options{}
		if cmd.Flags().Changed("token") {
			tok, _ := cmd.Flags().GetString("token")
			if tok == "-" {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
				if err != nil {
					return fmt.Errorf("reading the token from stdin: %w", err)
				}
				tok = strings.TrimSpace(string(b))
			}
			opts.Token, opts.HaveToken = tok, true
		}
		out := cmd.OutOrStdout()
		rep := runDoctorOnFile(cmd.Context(), configFile, adapter, opts)
		if asJSON {
			if err := rep.WriteJSON(out); err != nil {
				return err
			}
		} else {
			rep.WriteText(out)
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

func runDoctorOnFile(ctx context.Context, configFile, adapter string, opts diagnose.Options) *diagnose.Report {
	cfg, file, adapterUsed, err := caddycmd.LoadConfig(configFile, adapter)
	if file == "" {
		file = configFile
	}
	if adapterUsed == "" {
		adapterUsed = adapter
	}
	rep := diagnose.NewReport(file, adapterUsed)
	switch {
	case err != nil:
		rep.Fail(err.Error())
		return rep
	case len(cfg) == 0:
		rep.Fail("no config: give --config, or run in a directory with a Caddyfile")
		return rep
	}
	return runDoctor(ctx, rep, cfg, opts)
}

// runDoctor checks every bearer_auth handler of the JSON config cfg.
func runDoctor(ctx context.Context, rep *diagnose.Report, cfg []byte, opts diagnose.Options) *diagnose.Report {
	found, err := findBearerAuth(cfg)
	if err != nil {
		rep.Fail(err.Error())
		return rep
	}
	if len(found) == 0 {
		rep.Fail("no bearer_auth handler in this config")
		return rep
	}
	for _, f := range found {
		t, trusted := doctorTarget(f)
		for _, b := range diagnose.RunRoute(ctx, t, trusted, opts) {
			rep.Add(b)
		}
	}
	return rep
}

// doctorTarget maps a found handler to what diagnose checks: the validator
// config exactly as Provision maps it, the route's policy and extractor, and
// the handler itself to answer the token's request; and the same for every
// issuer the route trusts.
func doctorTarget(f foundHandler) (diagnose.Target, []diagnose.Target) {
	t := diagnose.Target{
		Where: diagnose.Where{Name: fmt.Sprintf("%s#%d", f.server, f.index), Server: f.server, Index: f.index,
			Path: f.path, Hosts: f.hosts, Paths: f.paths},
		Loader: "Caddy",
	}
	// The issuer is shown even when the block is invalid, as written.
	var peek struct {
		Issuer string `json:"issuer"`
	}
	_ = json.Unmarshal(f.raw, &peek)
	t.Issuer = peek.Issuer
	h, err := doctorHandler(f.raw)
	if err != nil {
		t.Invalid = err
		return t, nil
	}
	t.Issuer, t.Realm = h.Issuer, h.Realm
	t.Config = h.introspectConfig()
	t.Policy, t.Extractor = h.policy, h.extractor
	t.Respond = h.doctorRespond
	t.UpstreamToken = h.upstream
	t.ResourceMetadata = h.resourceMetadata()
	return t, h.doctorTrustTargets(t)
}

// doctorHandler decodes a handler and prepares it as Provision does, without
// any I/O: placeholders, defaults, Validate, and the per-route fields
// ServeHTTP needs.
func doctorHandler(raw []byte) (*Handler, error) {
	h := new(Handler)
	if err := caddy.StrictUnmarshalJSON(raw, h); err != nil {
		return nil, fmt.Errorf("bearer_auth: decoding: %w", err)
	}
	if err := h.prepare(); err != nil {
		return nil, err
	}
	if err := h.provisionUpstreamToken(); err != nil {
		return nil, err
	}
	h.logger = zap.NewNop()
	h.metrics = getMetrics()
	return h, nil
}

// doctorRespond runs the real ServeHTTP with the doctor's validators (so
// the verdict comes from their caches, not a second call), routed as the
// gateway routes them, on a request carrying authorization: the response a
// client would get, byte for byte.
func (h *Handler) doctorRespond(ctx context.Context, issuers *introspect.Issuers, authorization string) diagnose.Response {
	if err := h.bindIssuers(issuers.Validators()); err != nil {
		return diagnose.Response{Status: http.StatusServiceUnavailable, Body: []byte(err.Error())}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	req.Header.Set("Authorization", authorization)
	allowed := false
	_ = h.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		allowed = true
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	return diagnose.Response{Status: res.StatusCode, Header: res.Header, Body: body, Allowed: allowed}
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
