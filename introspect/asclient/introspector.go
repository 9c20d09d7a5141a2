package asclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokengate/tokengate/introspect/claims"
	"github.com/tokengate/tokengate/introspect/internal/httpbody"
)

// Introspector is an RFC 7662 client: it asks the authorization server
// whether a token is active, authenticating as the gateway's own client.
type Introspector struct {
	Endpoint string
	Auth     ClientAuthenticator
	// HTTPClient defaults to a client without redirects: an introspection
	// endpoint that redirects is misconfigured, and following it would send
	// the token (and our credentials) somewhere else.
	HTTPClient *http.Client
	// Timeout bounds one introspection call. Default DefaultHTTPTimeout.
	Timeout time.Duration
	// MaxResponseBytes bounds the response. Default DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Issuer, when set, must equal the response's iss if it has one.
	Issuer string
	// Leeway applies to exp and nbf. Default 0: the server already judged.
	Leeway time.Duration
	Now    func() time.Time
	// Observer, if set, receives each call's outcome and latency.
	Observer Observer
	// Interned, if set, holds the configured issuer and audiences for the
	// decisions to share instead of each holding a copy.
	Interned *claims.Interned

	lastGood  atomic.Int64 // unix nanos of the last proper RFC 7662 answer
	lastProbe atomic.Int64 // unix nanos of the last canary probe
	probes    singleflight.Group
}

// Observer receives metrics about calls to the server.
type Observer interface {
	// UpstreamCall is told the endpoint kind ("introspection", "token"),
	// how long the call took, and the OAuth error code or a transport
	// label ("" on success).
	UpstreamCall(endpoint string, d time.Duration, errCode string)
}

// Introspect asks whether token is active. It returns an invalid_token
// *claims.Error when the server says no, and a temporarily_unavailable
// *claims.Error (wrapping an *ASError where the server explained itself)
// when the gateway could not get an answer.
func (c *Introspector) Introspect(ctx context.Context, token string) (*claims.Decision, error) {
	d, err := c.introspectOnce(ctx, token)
	var ase *ASError
	if r, ok := c.Auth.(Renewable); ok && err != nil && claims.AsError(err).Code == claims.CodeUnavailable && errors.As(err, &ase) &&
		ase.Endpoint == c.Endpoint && ase.Status == http.StatusUnauthorized {
		// Our own (bearer) credential may have been revoked or expired
		// early at the server: renew it once and try again. Only a 401
		// (RFC 6750 §3.1: the gateway's token) triggers this; an answer
		// about the caller's token must never make the gateway call its
		// token endpoint, or junk tokens would drive those calls.
		r.Renew()
		d, err = c.introspectOnce(ctx, token)
	}
	return d, err
}

func (c *Introspector) introspectOnce(ctx context.Context, token string) (*claims.Decision, error) {
	d, err := c.exchange(ctx, token)
	if e, ok := err.(*claims.Error); ok && e.Reason == "as_server_error" && c.requestProvenWithin(ctx, 0) {
		// The server failed on this token while it answers others (its
		// canary, probed at most once a second, got a proper answer): a
		// token it chokes on, or a firewall in front of it refusing this
		// one. Still the gateway's 503 — the token is not known to be bad
		// — but not the server's outage: the breaker does not count it
		// and stale_grace does not apply, so junk cannot take the
		// breaker (and everyone's uncached tokens) down.
		e.Reason = ReasonServerErrorOnToken
		e.Hint = "the authorization server failed on this token although it answers the gateway's requests for other tokens: " + e.Hint
		return nil, e
	}
	if e, ok := err.(*claims.Error); ok && e.Reason == reasonRefusedRequest && c.requestProven(ctx) {
		// The same request shape got a proper RFC 7662 answer recently, so
		// the 400 is the server's verdict on this token (it would not parse
		// it): the caller's 401, cached like active:false, and a healthy
		// answer as far as the circuit breaker is concerned. Anyone can
		// send junk; it must not look like the gateway's trouble.
		ase := e.Err.(*ASError)
		return nil, &claims.Error{Code: claims.CodeInvalidToken, Reason: "as_rejected_token",
			Description: "the token is not active (expired, revoked, or unknown to the authorization server)",
			Hint: fmt.Sprintf("the authorization server would not introspect this token (HTTP %d %s) although it answers the gateway's requests for other tokens: its answer about this token",
				ase.Status, ase.Code),
			Err: ase}
	}
	return d, err
}

// reasonRefusedRequest marks a 400 that may be about the token or about the
// gateway's request: servers use invalid_request for both ("unable to
// process request" when the gateway's credentials are missing, or a token
// they cannot parse).
const reasonRefusedRequest = "as_rejected_request"

// ReasonServerErrorOnToken marks a 5xx for one token from a server that
// answers other requests: a 503 that says nothing about the server's health.
const ReasonServerErrorOnToken = "as_server_error_on_token"

// Proof that the gateway's requests are well-formed: a 200 RFC 7662 answer
// (active or not) within proofTTL. Without one, a 400 is first checked
// against a canary: a random opaque token, which a server that accepts the
// gateway's requests answers with active:false.
const (
	proofTTL      = 5 * time.Minute
	probeInterval = time.Second
)

// requestProven reports whether the endpoint has recently answered a
// request of the gateway's with a proper RFC 7662 response, probing with a
// canary token (at most once per probeInterval) when it has not. The canary
// is the gateway's own, so no caller can make this check fail.
func (c *Introspector) requestProven(ctx context.Context) bool {
	return c.requestProvenWithin(ctx, proofTTL)
}

// requestProvenWithin is requestProven with a proper answer no older than
// within counting as proof.
func (c *Introspector) requestProvenWithin(ctx context.Context, within time.Duration) bool {
	if t := c.lastGood.Load(); t != 0 && time.Since(time.Unix(0, t)) < within {
		return true
	}
	v, _, _ := c.probes.Do("canary", func() (any, error) {
		if t := c.lastProbe.Load(); t != 0 && time.Since(time.Unix(0, t)) < probeInterval {
			return c.lastGood.Load() > t, nil
		}
		c.lastProbe.Store(time.Now().UnixNano())
		var b [16]byte
		_, _ = rand.Read(b[:])
		_, err := c.exchange(context.WithoutCancel(ctx), "tokengate-canary-"+hex.EncodeToString(b[:]))
		return err == nil || claims.AsError(err).Code == claims.CodeInvalidToken, nil
	})
	return v.(bool)
}

// introspectionHints word the operator hints of an introspection call.
var introspectionHints = callHints{
	clientAuth:  "the gateway could not build its own client credentials: check client_secret / private_key",
	timeout:     "the authorization server did not answer in time: check it is up and reachable from this host, or raise introspect.timeout",
	unreachable: "could not connect to %s: check the URL, DNS, and that the server is up",
	badResponse: "the server's answer is not an RFC 7662 JSON response: check that the endpoint is the introspection endpoint (not a login page or proxy)",
}

// exchange makes one introspection call and reads the answer.
func (c *Introspector) exchange(ctx context.Context, token string) (*claims.Decision, error) {
	call := formPost{endpoint: c.Endpoint, kind: "introspection", hints: &introspectionHints, auth: c.Auth,
		client: c.HTTPClient, timeout: c.Timeout, maxBytes: c.MaxResponseBytes, observer: c.Observer}
	// RFC 7662 §2.1: token and token_type_hint, form-encoded, POST.
	r, refusal, err := call.send(ctx, url.Values{"token": {token}, "token_type_hint": {"access_token"}})
	switch {
	case err != nil:
		return nil, err
	case refusal != nil:
		return nil, refusedIntrospection(refusal)
	}
	if !httpbody.IsJSON(r.resp.Header.Get("Content-Type")) {
		r.done("bad_response")
		return nil, claims.Unavailable("bad_response", introspectionHints.badResponse,
			fmt.Errorf("%s answered %s, not JSON: is the endpoint URL right?", c.Endpoint, r.describe()))
	}
	r.done("")
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	d, perr := parseIntrospectionResponse(r.body, now(), c.Leeway, c.Issuer, c.Interned)
	if perr == nil || perr.Code != claims.CodeUnavailable {
		c.lastGood.Store(time.Now().UnixNano())
	}
	if perr != nil {
		if perr.Code == claims.CodeUnavailable {
			perr.Err = fmt.Errorf("%s: %w", c.Endpoint, perr.Err)
		}
		return nil, perr
	}
	return d, nil
}

// refusedIntrospection is the gateway's trouble when the server refused to
// introspect. A 400 that may be about the token itself is marked
// reasonRefusedRequest, for introspectOnce to tell which it is.
func refusedIntrospection(refusal *ASError) *claims.Error {
	if refusal.AboutToken() {
		return claims.Unavailable(reasonRefusedRequest,
			"the authorization server refused the gateway's request even for its own canary token, so the request itself is at fault: "+refusal.Hint(),
			refusal)
	}
	reason := "as_rejected_gateway"
	if refusal.Status >= 500 {
		reason = "as_server_error"
	}
	return claims.Unavailable(reason, refusal.Hint(), refusal)
}

// ParseIntrospectionResponse reads an RFC 7662 §2.2 response strictly.
// Anything that is not a well-formed answer fails closed as the server's
// fault (temporarily_unavailable), never as the caller's.
func ParseIntrospectionResponse(body []byte, now time.Time, leeway time.Duration, issuer string) (*claims.Decision, *claims.Error) {
	return parseIntrospectionResponse(body, now, leeway, issuer, nil)
}

func parseIntrospectionResponse(body []byte, now time.Time, leeway time.Duration, issuer string, interned *claims.Interned) (*claims.Decision, *claims.Error) {
	answer, err := claims.ParseStrictObject(body)
	if err != nil {
		return nil, claims.Unavailable("bad_response", "the introspection response is not a JSON object", err)
	}
	rules := claims.IntrospectionRules{Issuer: issuer, Leeway: leeway, Interned: interned}
	return rules.Decision(answer, now)
}
