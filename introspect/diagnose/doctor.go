package diagnose

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/introspect/upstreamtoken"
)

// stepTimeout bounds every network step of the doctor that New does not
// bound itself (one introspection, one token decision).
const stepTimeout = 10 * time.Second

// Target is one block to check, as the glue found and mapped it.
type Target struct {
	Where
	// Issuer is shown in the report even when the block is invalid.
	Issuer string
	// Realm is shown in the config check's data.
	Realm string
	// Config is the validator's configuration, mapped exactly as the
	// gateway maps it when it starts.
	Config introspect.Config
	// Invalid is why the gateway would refuse the block (nil: it loads).
	// Config.Check is run as well; this carries the host's own rules.
	Invalid error
	// Loader names what refuses an invalid block, for the hint ("Caddy").
	// Default: "the gateway".
	Loader string
	// Policy and Extractor are the route's, as the handler applies them.
	Policy    introspect.Policy
	Extractor introspect.Extractor
	// Respond runs the handler itself with the route's issuers on a
	// request carrying authorization, so that the decision shown is the
	// gateway's response to the byte. Nil: the decision check is skipped.
	Respond Responder
	// UpstreamToken is the route's upstream token minter, built as the
	// gateway builds it; nil without upstream_token.
	UpstreamToken *upstreamtoken.Minter
	// ResourceMetadata is the RFC 9728 document the block serves, defaults
	// applied (nil: none, and no resource metadata checks).
	ResourceMetadata *introspect.ResourceMetadata
}

// Responder answers a request carrying the Authorization value
// authorization the way the gateway would, with the doctor's validators
// routed as the gateway routes them (one per issuer the route trusts).
type Responder func(ctx context.Context, issuers *introspect.Issuers, authorization string) Response

// Response is what a client would get.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// Allowed reports that the request was passed on to the next handler.
	Allowed bool
}

// Options are the doctor's own settings.
type Options struct {
	// Token is explained when HaveToken is set; it may be bare or a whole
	// "Bearer <token>" value. It is never printed.
	Token     string
	HaveToken bool
	// Now is the doctor's clock for round-trip timing. Default time.Now.
	Now func() time.Time
}

// Run checks one block: the config, then one validator built by
// introspect.New exactly as the gateway builds it (discovery, the key set,
// the gateway's own client authentication), the credentials, the clock and,
// with a token, the decision. The validator is closed before Run returns.
func Run(ctx context.Context, t Target, opts Options) *Block {
	return RunRoute(ctx, t, nil, opts)[0]
}

// doctor runs the checks of one block.
type doctor struct {
	ctx   context.Context
	t     Target
	opts  Options
	cfg   introspect.Config // t.Config with defaults, as New sees it
	block *Block

	// v is the block's one validator; nil when the config is invalid or
	// New failed. Then failedAt is the setting New failed on (see
	// introspect.NewFailure) and failure its cause.
	v        *introspect.Validator
	failedAt string
	failure  error

	// issuers routes between the validators of every block of the route,
	// as the gateway does; set on the block that explains the token (nil:
	// some block's validator could not be built, and loadFailure says
	// which).
	issuers     *introspect.Issuers
	loadFailure error
	// routed is set when the route trusts several issuers: the token's
	// explanation then says which one it went to.
	routed bool

	dates   dateRecorder
	skipAll string // reason to skip the remaining checks
	// allowed is the token's decision when the route's policy let it
	// through (explainToken), for the upstream token sample.
	allowed *introspect.Decision
}

func (d *doctor) add(name string, status Status, detail, hint string, data map[string]any) {
	d.block.Checks = append(d.block.Checks, &Check{Name: name, Status: status, Detail: oneLine(detail), Hint: oneLine(hint), Data: data})
}

func (d *doctor) skip(name, reason string) { d.add(name, StatusSkip, reason, "", nil) }

// failed reports whether a check of this block has failed so far.
func (d *doctor) failed() bool {
	return slices.ContainsFunc(d.block.Checks, func(c *Check) bool { return c.Status == StatusFail })
}

// checkOf is the check a setting's New failure belongs to.
var checkOf = map[string]string{"issuer": CheckDiscovery, "introspect": CheckCredentials, "jwt": CheckJWKS}

// notStarted is the skip reason of a check New did not get to.
func (d *doctor) notStarted() string {
	return fmt.Sprintf("skipped: the gateway cannot start this block (the %s check failed)", checkOf[d.failedAt])
}

func (d *doctor) checkConfig() {
	if err := d.t.Invalid; err != nil {
		d.invalid(err)
		return
	}
	if err := d.cfg.Check(); err != nil {
		d.invalid(err)
		return
	}
	d.build()
	if d.v == nil && checkOf[d.failedAt] == "" {
		// Nothing later explains it (the cache, say): the gateway would
		// not start with this config.
		d.add(CheckConfig, StatusFail, "the gateway cannot start this block: "+d.failure.Error(), "", nil)
		d.skipAll = "skipped: the gateway cannot start this block"
		return
	}
	c := d.cfg
	var parts []string
	data := map[string]any{"realm": d.t.Realm}
	if i := c.Introspect; i != nil {
		parts = append(parts, fmt.Sprintf("introspect as %s (%s)", i.ClientID, i.AuthMethod))
		data["introspect"] = map[string]any{"client_id": i.ClientID, "auth_method": i.AuthMethod, "endpoint": i.Endpoint}
	}
	if j := c.JWT; j != nil {
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
	p := d.t.Policy
	for _, s := range []struct {
		name string
		v    []string
	}{{"audience", c.Audience}, {"scopes", p.Scopes}, {"any_scope", p.AnyScope}, {"clients", p.Clients}} {
		if len(s.v) > 0 {
			parts = append(parts, s.name+" "+strings.Join(s.v, " "))
			data[s.name] = s.v
		}
	}
	d.add(CheckConfig, StatusPass, strings.Join(parts, "; "), "", data)
}

func (d *doctor) invalid(err error) {
	loader := d.t.Loader
	if loader == "" {
		loader = "the gateway"
	}
	d.add(CheckConfig, StatusFail, err.Error(), "fix the sub-directive named above; "+loader+" would refuse to load this config", nil)
	d.skipAll = "skipped: the config is invalid"
}

// build makes the block's one validator with introspect.New, as the gateway
// does when it starts, with three differences that change how it talks to
// no one but the doctor: no shared Redis tier (the doctor writes nothing a
// fleet reads), no logger or metrics, and an unreachable JWKS does not stop
// it (the jwks check reports that, and the other checks still run).
func (d *doctor) build() {
	cfg := d.cfg
	cfg.Cache.RedisURL, cfg.Cache.RedisNamespace = "", ""
	cfg.Logger, cfg.Observer = nil, nil
	if cfg.JWT != nil {
		j := *cfg.JWT
		j.AllowStartWithoutKeys = true
		cfg.JWT = &j
	}
	now := d.dates.clock()
	start := now()
	v, err := introspect.New(cfg)
	end := now()
	if err != nil {
		setting, cause, _ := introspect.NewFailure(err)
		d.failedAt, d.failure = setting, cause
		if checkOf[setting] == "" {
			// No check of its own to name the setting: keep New's words.
			d.failure = err
		}
		return
	}
	d.v = v
	if md := v.Metadata(); md != nil && !md.Date.IsZero() {
		// Discovery happened inside New: its round trip lies within New's.
		d.dates.add(dateSample{url: md.Source, status: http.StatusOK, date: md.Date, start: start, end: end})
	}
	if in := v.Introspector(); in != nil {
		// The canary's (and the token's) introspection answers are clock
		// samples too. The client is this validator's own, used by no one
		// else, and recording changes nothing it sends or decides.
		in.HTTPClient = d.dates.client(in.HTTPClient)
	}
}

func (d *doctor) stepContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(d.ctx, stepTimeout)
}

// checkDiscovery runs when, and only when, the validator needs the issuer's
// metadata (introspect.Config.NeedsDiscovery, the function New asks).
func (d *doctor) checkDiscovery() {
	switch {
	case d.skipAll != "":
		d.skip(CheckDiscovery, d.skipAll)
	case !d.cfg.NeedsDiscovery():
		if d.cfg.Issuer == "" {
			d.skip(CheckDiscovery, "no issuer configured")
		} else {
			d.skip(CheckDiscovery, "not needed: the endpoints and keys this block uses are configured")
		}
	case d.failedAt == "issuer":
		hint := "check that the issuer is reachable from this host (URL, DNS, firewall, proxy) and is the authorization server's issuer identifier"
		if strings.Contains(d.failure.Error(), "names issuer") {
			hint = "set issuer to exactly the issuer in the server's metadata (scheme, host, path, trailing slash; for a multi-realm server, the realm's issuer)"
		}
		d.add(CheckDiscovery, StatusFail, d.failure.Error(), hint, nil)
	case d.v == nil:
		// New got past discovery and failed later: the metadata is gone
		// with it, but it was there and named the issuer.
		d.add(CheckDiscovery, StatusPass, "metadata of "+d.cfg.Issuer+" found (issuer matches)", "", nil)
	default:
		md := d.v.Metadata()
		d.add(CheckDiscovery, StatusPass, md.Source+" (issuer matches)", "", map[string]any{
			"url": md.Source, "issuer": md.Issuer,
			"introspection_endpoint": md.IntrospectionEndpoint, "jwks_uri": md.JWKSURI,
			"introspection_endpoint_auth_methods_supported": md.IntrospectionAuthMethods,
		})
	}
}

// keyCounter is what both key sets tell about their keys.
type keyCounter interface{ Len() int }

func (d *doctor) checkJWKS() {
	j := d.cfg.JWT
	switch {
	case d.skipAll != "":
		d.skip(CheckJWKS, d.skipAll)
		return
	case j == nil:
		d.skip(CheckJWKS, "no jwt block")
		return
	case d.failedAt == "jwt":
		hint := "check that the JWKS URL is reachable from this host and serves a JWK Set (status 200, application/json) with at least one signature key"
		if j.JWKSFile != "" {
			hint = "check jwks_file: it must hold a JWK Set, a JWK, or PEM public keys the gateway can read"
		}
		d.add(CheckJWKS, StatusFail, d.failure.Error(), hint, nil)
		return
	case d.v == nil:
		if d.failedAt == "issuer" && j.JWKSURL == "" && j.JWKSFile == "" {
			d.skip(CheckJWKS, "skipped: jwks_uri unknown (discovery failed)")
		} else {
			d.skip(CheckJWKS, d.notStarted())
		}
		return
	}
	ks := d.v.KeySet()
	n := 0
	if c, ok := ks.(keyCounter); ok {
		n = c.Len()
	}
	algs := ks.Algorithms()
	u := introspect.KeySetURL(ks)
	if u == "" {
		detail := fmt.Sprintf("%s in %s (%s)", plural(n, "key"), j.JWKSFile, algList(algs))
		data := map[string]any{"file": j.JWKSFile, "keys": n, "algorithms": algs}
		if s, ok := ks.(interface{ Skipped() []string }); ok && len(s.Skipped()) > 0 {
			data["skipped"] = s.Skipped()
		}
		d.add(CheckJWKS, StatusPass, detail, "", data)
		return
	}
	if n == 0 {
		detail := "no usable key at " + u
		if err := introspect.KeySetError(ks); err != nil {
			detail = fmt.Sprintf("fetching the JWKS from %s: %v", u, err)
		}
		d.add(CheckJWKS, StatusFail, detail,
			"check that the JWKS URL is reachable from this host and serves a JWK Set (status 200, application/json) with at least one signature key",
			map[string]any{"url": u})
		return
	}
	d.add(CheckJWKS, StatusPass, fmt.Sprintf("%s at %s (%s)", plural(n, "key"), u, algList(algs)), "",
		map[string]any{"url": u, "keys": n, "algorithms": algs})
}

// checkCredentials introspects a random token with the validator's own
// introspection client: active:false proves the server accepted the
// gateway's credentials.
func (d *doctor) checkCredentials() {
	i := d.cfg.Introspect
	switch {
	case d.skipAll != "":
		d.skip(CheckCredentials, d.skipAll)
		return
	case i == nil:
		d.skip(CheckCredentials, "no introspect block")
		return
	case d.failedAt == "introspect":
		d.add(CheckCredentials, StatusFail, d.failure.Error(), "the gateway could not build its client credentials: check the introspect block",
			map[string]any{"endpoint": i.Endpoint, "client_id": i.ClientID, "auth_method": i.AuthMethod})
		return
	case d.v == nil:
		if d.failedAt == "issuer" && i.Endpoint == "" {
			d.skip(CheckCredentials, "skipped: introspection endpoint unknown (discovery failed)")
		} else {
			d.skip(CheckCredentials, d.notStarted())
		}
		return
	}
	intro := d.v.Introspector()
	endpoint := intro.Endpoint
	data := map[string]any{"endpoint": endpoint, "client_id": i.ClientID, "auth_method": i.AuthMethod}
	ctx, cancel := d.stepContext()
	defer cancel()
	_, err := intro.Introspect(ctx, canaryToken())
	who := fmt.Sprintf("%s as %s", i.AuthMethod, i.ClientID)
	// A wrong aud is the most common reason a server refuses an assertion,
	// and its default depends on whether an issuer is set: say which aud
	// was signed (asked of the authenticator that signed it) and why.
	audNote := ""
	if at, ok := introspect.AssertionTargetOf(intro.Auth, endpoint); ok {
		what := "assertion"
		if at.Endpoint != endpoint {
			what = "token request's assertion" // auth_method bearer
		}
		audNote = fmt.Sprintf("; %s aud %s (%s)", what, at.Audience, at.Source)
		data["assertion_audience"], data["assertion_audience_source"] = at.Audience, at.Source
		data["assertion_endpoint"] = at.Endpoint
	}
	if err == nil {
		d.add(CheckCredentials, StatusFail, endpoint+" said a random token is active"+audNote,
			"the endpoint does not check tokens: is it really the authorization server's introspection endpoint?", data)
		return
	}
	ie := introspect.AsError(err)
	if ie.Code == introspect.CodeInvalidToken {
		data["answer"] = "active:false"
		d.add(CheckCredentials, StatusPass,
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
		if md := d.v.Metadata(); md != nil && len(md.IntrospectionAuthMethods) > 0 && i.AuthMethod != "bearer" && !slices.Contains(md.IntrospectionAuthMethods, i.AuthMethod) {
			hint += fmt.Sprintf("; the server's metadata lists introspection auth methods %s, not %s", strings.Join(md.IntrospectionAuthMethods, " "), i.AuthMethod)
		}
		d.add(CheckCredentials, StatusFail, detail, hint, data)
		return
	}
	detail := ie.Reason
	if ie.Err != nil {
		detail = ie.Err.Error()
	}
	data["reason"] = ie.Reason
	hint := ie.Hint
	if hint == "" {
		hint = "check that the introspection endpoint is reachable from this host"
	}
	d.add(CheckCredentials, StatusFail, detail+audNote, hint, data)
}

// canaryToken is a token no server can know: introspecting it proves only
// that the server accepted the gateway's credentials.
func canaryToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return "tokengate-doctor-" + base64.RawURLEncoding.EncodeToString(b[:])
}

// oneLine keeps a detail on one line: joined errors (discovery tries two
// URLs) come with newlines.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), "; ")
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
