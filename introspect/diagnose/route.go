package diagnose

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/tokengate/tokengate/introspect"
	claimtext "github.com/tokengate/tokengate/introspect/claims"
)

// RunRoute checks one route: its own issuer (t) and every issuer it trusts
// (trusted, in the order the route lists them), one block each. Every block
// gets what Run gives one: its own validator built by introspect.New as the
// gateway builds it, and the config, discovery, keys, credentials and clock
// checks against its own authorization server.
//
// A token is explained once, in the block of the issuer the gateway would
// hand it to — introspect.Issuers.Route over all the blocks' validators,
// the gateway's own rule: a JWT goes to the issuer its iss names, an
// opaque token to the first issuer with introspection, a JWT of any other
// issuer nowhere (then the route's own block shows the refusal). The other
// blocks say where it went. The validators are closed before RunRoute
// returns.
func RunRoute(ctx context.Context, t Target, trusted []Target, opts Options) []*Block {
	if ctx == nil {
		ctx = context.Background()
	}
	targets := append([]Target{t}, trusted...)
	ds := make([]*doctor, len(targets))
	for i, tt := range targets {
		d := &doctor{ctx: ctx, t: tt, opts: opts, cfg: tt.Config.WithDefaults(),
			block: &Block{Where: tt.Where, Issuer: tt.Issuer, Checks: []*Check{}}, routed: len(targets) > 1}
		d.dates.now = opts.Now
		ds[i] = d
	}
	defer func() {
		for _, d := range ds {
			if d.v != nil {
				d.v.Close()
			}
		}
	}()
	for _, d := range ds {
		d.checkConfig()
		d.checkDiscovery()
		d.checkJWKS()
		d.checkCredentials()
		d.checkClock()
	}
	// What the route itself serves and forwards: checked once, in its own
	// block.
	ds[0].checkUpstreamToken()
	ds[0].checkResourceMetadata()
	if opts.HaveToken {
		explainer, why := routeToken(ds)
		for _, d := range ds {
			if d == explainer {
				d.explainToken()
				// The route mints the upstream token whichever issuer
				// the caller's token came from.
				d.t.UpstreamToken = ds[0].t.UpstreamToken
				d.sampleUpstreamToken()
				continue
			}
			for _, n := range []string{CheckTokenSyntax, CheckTokenValidation, CheckTokenPolicy, CheckDecision} {
				d.skip(n, fmt.Sprintf("skipped: the token is explained under %s (%s)", explainer.block.Name, why))
			}
		}
	}
	blocks := make([]*Block, len(ds))
	for i, d := range ds {
		d.block.OK = !d.failed()
		blocks[i] = d.block
	}
	return blocks
}

// routeToken picks the block that explains the token and says why, with
// the gateway's router over every block's validator. When a block has no
// validator the gateway would not start this route at all: the route's own
// block explains that.
func routeToken(ds []*doctor) (explainer *doctor, why string) {
	own := ds[0]
	vs := make([]*introspect.Validator, 0, len(ds))
	for _, d := range ds {
		if d.v == nil {
			own.loadFailure = d.failure
			if d.failure == nil {
				own.loadFailure = fmt.Errorf("the config is invalid")
			}
			if d != own {
				own.loadFailure = fmt.Errorf("%s (issuer %s) cannot be loaded: %w", d.block.Name, d.t.Issuer, own.loadFailure)
			}
			return own, "the gateway cannot load this route"
		}
		vs = append(vs, d.v)
	}
	is, err := introspect.NewIssuers(vs...)
	if err != nil {
		own.loadFailure = err
		return own, "the gateway cannot load this route"
	}
	for _, d := range ds {
		d.issuers = is
	}
	if len(ds) == 1 {
		return own, ""
	}
	_, tok, xerr := extractToken(own.ctx, own.t.Extractor, own.opts.Token)
	if xerr != nil || tok == "" {
		return own, "the token is not well-formed"
	}
	v, rerr := is.Route(tok)
	if rerr != nil {
		return own, rerr.Description
	}
	for _, d := range ds {
		if d.v == v {
			if introspect.LooksLikeJWT(tok) {
				return d, "its iss names " + d.t.Issuer
			}
			return d, "an opaque token goes to the first issuer with introspect"
		}
	}
	return own, ""
}

// extractToken reads the token the way the route does: with its own
// extractor, on a real request. raw may be a bare token or a whole
// Authorization value; the gateway's parser says which.
func extractToken(ctx context.Context, x introspect.Extractor, raw string) (header, tok string, xerr *introspect.Error) {
	header = raw
	if _, isBearer, _ := introspect.ParseAuthorization(header); !isBearer {
		header = "Bearer " + header
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	req.Header.Set("Authorization", header)
	tok, _, xerr = x.Extract(req)
	return header, tok, xerr
}

// routeNote says which issuer of the route judged tok, and why.
func (d *doctor) routeNote(tok string, data map[string]any) string {
	data["issuer"] = d.t.Issuer
	if introspect.LooksLikeJWT(tok) {
		return "routed by its iss to " + d.t.Issuer + ": "
	}
	return "opaque, so routed to the first issuer with introspect (" + d.t.Issuer + "): "
}

// untrusted describes a token the router refused: which issuer it names,
// and which ones the route trusts.
func (d *doctor) untrusted(tok string, rerr *introspect.Error) string {
	iss := "no iss"
	if _, claims, _ := introspect.UnverifiedJWT(tok); claims != nil {
		if s, ok := claims["iss"].(string); ok {
			iss = fmt.Sprintf("iss %q", claimtext.Shorten(s))
		}
	}
	var names []string
	for _, v := range d.issuers.Validators() {
		names = append(names, v.Issuer())
	}
	return fmt.Sprintf("JWT with %s, which this route does not trust (trusted: %s): %s: %s (%s)",
		iss, strings.Join(names, ", "), rerr.Code, rerr.Description, rerr.Reason)
}
