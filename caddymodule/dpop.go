package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/introspect/dpop"
)

// DPoPConfig configures DPoP (RFC 9449). Whatever the mode, a token bound
// to a DPoP key (cnf.jkt) is accepted only with the DPoP scheme and a valid
// proof of that key, and a token bound to a client certificate
// (cnf.x5t#S256, RFC 8705) only over a TLS connection that presented that
// certificate.
type DPoPConfig struct {
	// off: DPoP is not advertised; bound tokens are still enforced and
	// accepted with their proofs. optional: the DPoP challenge is offered
	// next to Bearer (Bearer first). required: only DPoP-bound tokens with
	// proofs are accepted. Default: off.
	Mode string `json:"mode,omitempty"`
	// Proof signature algorithms accepted (asymmetric only). Default:
	// ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA Ed25519.
	Algorithms []string `json:"algorithms,omitempty"`
	// How far a proof's iat may be from the gateway's clock, either way;
	// jti values are remembered as long as a proof can be accepted.
	// Default: 60s.
	Window caddy.Duration `json:"window,omitempty"`
	// Require server-provided nonces in proofs (RFC 9449 §9): a proof
	// without the current nonce gets 401 use_dpop_nonce with a DPoP-Nonce
	// header, and every DPoP response carries the current nonce. A nonce
	// is good for one window and the next. Gateways of a fleet accept each
	// other's nonces when they share cache.key_secret. Default: false.
	Nonce bool `json:"nonce,omitempty"`
}

const (
	dpopOff      = "off"
	dpopOptional = "optional"
	dpopRequired = "required"
)

// dpopGate is the per-route DPoP state ServeHTTP needs.
type dpopGate struct {
	mode     string
	verifier *dpop.Verifier
	algs     string // the challenge's algs value, quoted
}

func (c *DPoPConfig) validate() error {
	if c == nil {
		return nil
	}
	switch c.Mode {
	case "", dpopOff, dpopOptional, dpopRequired:
	default:
		return fmt.Errorf("bearer_auth: dpop %q: want off, optional or required", c.Mode)
	}
	if c.Window < 0 {
		return errors.New("bearer_auth: dpop window must not be negative")
	}
	for _, a := range c.Algorithms {
		if !dpop.Supported(a) {
			return fmt.Errorf("bearer_auth: dpop algorithm %q is not supported (asymmetric JWS algorithms only: %s)", a, strings.Join(dpop.Algorithms, " "))
		}
	}
	return nil
}

// prepareDPoP builds the gate; the replay cache is the validator's (memory
// plus Redis when configured), so it is attached in provisionDPoP.
func (h *Handler) prepareDPoP() error {
	c := h.DPoP
	if c == nil {
		c = new(DPoPConfig)
	}
	if err := c.validate(); err != nil {
		return err
	}
	if c.Mode == "" {
		c.Mode = dpopOff
	}
	v := &dpop.Verifier{Algorithms: c.Algorithms, Window: time.Duration(c.Window)}
	if c.Nonce {
		n := &dpop.Nonces{Step: time.Duration(c.Window)}
		if h.Cache != nil && h.Cache.KeySecret != "" {
			// Derived inside Nonces with its own label: the cache's HMAC
			// and the nonce's never produce the same values.
			n.Secret = []byte(h.Cache.KeySecret)
		}
		n.Init()
		v.Nonces = n
	}
	if err := v.Init(); err != nil {
		return fmt.Errorf("bearer_auth: %w", err)
	}
	h.dpop = &dpopGate{mode: c.Mode, verifier: v, algs: `"` + strings.Join(v.AllowedAlgorithms(), " ") + `"`}
	return nil
}

var (
	defaultGateOnce sync.Once
	defaultGateVal  *dpopGate
)

func defaultGate() *dpopGate {
	defaultGateOnce.Do(func() {
		v := &dpop.Verifier{Replay: dpop.NewMemoryReplay(0, nil)}
		_ = v.Init()
		defaultGateVal = &dpopGate{mode: dpopOff, verifier: v, algs: `"` + strings.Join(v.AllowedAlgorithms(), " ") + `"`}
	})
	return defaultGateVal
}

// provisionDPoP attaches the shared replay cache.
func (h *Handler) provisionDPoP() {
	h.dpop.verifier.Replay = h.entry.validator.ReplayCache()
}

// bind checks how the request presented its token against the decision:
// the DPoP proof (RFC 9449 §4.3), the token's cnf binding (RFC 9449 §6,
// RFC 8705 §3) and the proof's single use (§11.1), in that order, on every
// request. Nothing here is cached: the decision stays good for its holder
// whatever a thief sends.
//
// cnf is the decision's confirmation (read once per decision: memo.go),
// nil when it has none.
func (h *Handler) bind(w http.ResponseWriter, r *http.Request, cnf *confirmation, token string, from introspect.Transport) *introspect.Error {
	g := h.dpop
	if g == nil {
		// A Handler used without Provision (unit tests): bindings are
		// still enforced, with the defaults.
		g = defaultGate()
	}
	p := introspect.Presentation{DPoP: from == introspect.TransportDPoP, RequireDPoP: g.mode == dpopRequired}
	var proof *dpop.Proof
	if p.DPoP {
		if n := g.verifier.Nonces; n != nil {
			// RFC 9449 §9: the nonce to use next, on every DPoP answer
			// (the use_dpop_nonce refusal included).
			w.Header().Set("DPoP-Nonce", n.Current())
		}
		values := r.Header.Values("DPoP")
		if len(values) > 1 {
			// §4.3 check 1: not more than one DPoP header.
			dpopMetrics().outcome("invalid_proof")
			return &introspect.Error{Code: dpop.CodeInvalidProof, Reason: "dpop_multiple", Description: "more than one DPoP proof header"}
		}
		var raw string
		if len(values) == 1 {
			raw = values[0]
		}
		pr, err := g.verifier.Verify(raw, dpop.Request{Method: r.Method, URI: requestURI(r), AccessToken: token})
		if err != nil {
			dpopMetrics().outcome("invalid_proof")
			return introspect.AsError(err)
		}
		proof, p.ProofThumbprint = pr, pr.Thumbprint
	}
	var c confirmation
	if cnf != nil {
		c = *cnf
	}
	if c.x5t != "" && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		p.CertThumbprint = introspect.CertThumbprint(r.TLS.PeerCertificates[0].Raw)
	}
	if err := introspect.CheckConfirmation(c.jkt, c.x5t, c.malformed, p); err != nil {
		dpopMetrics().outcome(err.Reason)
		return err
	}
	if c.x5t != "" {
		dpopMetrics().outcome("certificate_bound")
	}
	if proof != nil {
		if err := g.verifier.Consume(r.Context(), proof); err != nil {
			e := introspect.AsError(err)
			dpopMetrics().outcome(e.Reason)
			return e
		}
		dpopMetrics().outcome("accepted")
		if h.StripAuthorization || h.upstream != nil {
			// The proof belongs with the caller's token: neither goes on.
			r.Header.Del("DPoP")
		}
	}
	return nil
}

// requestURI is the URI the client addressed, for htu (RFC 9449 §4.3 check
// 9): the original request path (before rewrites and handle_path), and the
// scheme and host of the client's connection — or, when Caddy found that
// the request came from one of its trusted_proxies, the ones the proxy
// reports in X-Forwarded-Proto and X-Forwarded-Host. From any other peer
// those headers are the client's word and are ignored.
func requestURI(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			scheme = p
		}
		if fh := firstValue(r.Header.Get("X-Forwarded-Host")); fh != "" {
			host = fh
		}
	}
	path := r.URL.EscapedPath()
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		path = orig.URL.EscapedPath()
	}
	return scheme + "://" + host + path
}

// firstValue is the first element of a comma-separated header value: the
// one the proxy nearest the client wrote.
func firstValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}

// usesDPoPScheme reports a request that sent "Authorization: DPoP ...".
func usesDPoPScheme(r *http.Request) bool {
	v := r.Header.Get("Authorization")
	return len(v) > 5 && strings.EqualFold(v[:5], "dpop ")
}

// setChallenge sets WWW-Authenticate: the Bearer challenge (bearer, with
// its error attributes if any) unless dpop is required, and the DPoP one
// (RFC 9449 §7.1: algs, and the error when it concerns DPoP) when DPoP is
// on or the request or its failure was about DPoP. Bearer comes first:
// many clients read only the first challenge. code is "" when no
// credentials were sent (RFC 6750 §3.1: no error code then).
func (h *Handler) setChallenge(hdr http.Header, r *http.Request, bearer, code, desc, scope string) {
	g := h.dpop
	if g == nil {
		hdr.Set("WWW-Authenticate", bearer)
		return
	}
	dpopRelated := code == string(dpop.CodeInvalidProof) || code == string(dpop.CodeUseNonce) || code != "" && usesDPoPScheme(r)
	errOnDPoP := dpopRelated || code != "" && g.mode == dpopRequired
	offerDPoP := g.mode != dpopOff || dpopRelated
	hdr.Del("WWW-Authenticate")
	if g.mode != dpopRequired {
		if errOnDPoP {
			bearer = "Bearer realm=" + h.realm
		}
		hdr.Add("WWW-Authenticate", bearer)
	}
	if !offerDPoP {
		return
	}
	var b strings.Builder
	b.WriteString("DPoP realm=")
	b.WriteString(h.realm)
	b.WriteString(", algs=")
	b.WriteString(g.algs)
	if errOnDPoP {
		b.WriteString(`, error="`)
		b.WriteString(code)
		b.WriteByte('"')
		if desc != "" {
			b.WriteString(`, error_description="`)
			b.WriteString(desc)
			b.WriteByte('"')
		}
		if scope != "" {
			b.WriteString(`, scope="`)
			b.WriteString(scopeValue(scope))
			b.WriteByte('"')
		}
	}
	hdr.Add("WWW-Authenticate", b.String())
}

// dpopCounters count binding outcomes: caddy_bearer_auth_dpop_total{outcome}
// (accepted, invalid_proof, dpop_replay, dpop_key_mismatch,
// dpop_bound_as_bearer, dpop_unbound_token, dpop_required,
// certificate_bound, certificate_mismatch, cnf_malformed, ...).
type dpopCounters struct {
	vec *prometheus.CounterVec
	by  map[string]prometheus.Counter
}

var (
	dpopMetricsOnce sync.Once
	dpopMetricsVal  *dpopCounters
)

var dpopOutcomes = []string{"accepted", "invalid_proof", "dpop_replay", "dpop_replay_store",
	"dpop_key_mismatch", "dpop_bound_as_bearer", "dpop_unbound_token", "dpop_required",
	"certificate_bound", "certificate_mismatch", "cnf_malformed"}

func dpopMetrics() *dpopCounters {
	dpopMetricsOnce.Do(func() {
		m := &dpopCounters{
			vec: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
				Name: "dpop_total", Help: "Sender-constrained token checks (DPoP proofs, RFC 9449; certificate binding, RFC 8705), by outcome."}, []string{"outcome"}),
			by: map[string]prometheus.Counter{},
		}
		for _, o := range dpopOutcomes {
			m.by[o] = m.vec.WithLabelValues(o)
		}
		dpopMetricsVal = m
	})
	return dpopMetricsVal
}

func (m *dpopCounters) outcome(o string) {
	if c, ok := m.by[o]; ok {
		c.Inc()
	}
}

func (m *dpopCounters) register(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	if err := reg.Register(m.vec); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return err
		}
	}
	return nil
}

// unmarshal parses `dpop off|optional|required [{ algorithms ...; window ... }]`.
func (c *DPoPConfig) unmarshal(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	c.Mode = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "algorithms":
			err = stringList(d, &c.Algorithms)
		case "window":
			err = duration(d, &c.Window)
		case "nonce":
			err = flag(d, &c.Nonce)
		default:
			return d.Errf("unrecognized dpop subdirective '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return c.validate()
}
