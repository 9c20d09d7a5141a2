package asclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokengate/tokengate/introspect/claims"
	"github.com/tokengate/tokengate/introspect/internal/httpbody"
)

// formPost is one call of the gateway to an authorization server endpoint: a
// form-encoded POST (RFC 6749 §3.2, RFC 7662 §2.1) that carries the
// gateway's own client authentication and asks for JSON. Introspection and
// the client_credentials token request are both made with it, so both bound
// the call in time and the answer in size, read a refusal the same way, and
// report exactly one metric per call.
type formPost struct {
	endpoint string
	// kind is the endpoint label of the metric: "introspection" or "token".
	kind     string
	hints    *callHints
	auth     ClientAuthenticator // nil: no client authentication
	client   *http.Client        // nil: NewHTTPClient(timeout)
	timeout  time.Duration
	maxBytes int64
	observer Observer
}

// callHints word what the operator should check when a call to one kind of
// endpoint fails before the server has judged anything.
type callHints struct {
	clientAuth  string // the authenticator failed
	badEndpoint string // the URL does not make a request
	timeout     string
	unreachable string // a format: %s is the endpoint
	badResponse string // the answer is unreadable, or not what the endpoint answers
}

// reply is a 200 answer, read within the bound. The caller judges the body,
// then reports the call with done.
type reply struct {
	resp  *http.Response // the body is already read and closed
	body  []byte
	start time.Time
	post  *formPost
}

// done reports the call: errCode is "" for a usable answer, else the label
// of what was wrong with it.
func (r *reply) done(errCode string) { r.post.observe(r.start, errCode) }

// describe names the answer without quoting it.
func (r *reply) describe() string { return describeBody(r.resp, len(r.body)) }

// send makes the call. A 200 comes back as a reply, not yet reported. Any
// other status comes back as the server's refusal (already reported), which
// the caller judges: it may be about the gateway or about what it asked.
// Every other failure comes back as a temporarily_unavailable *claims.Error
// worded with p's hints (already reported), or as the authenticator's own
// *claims.Error when it has explained itself (a bearer authenticator whose
// token request was refused).
func (p *formPost) send(ctx context.Context, form url.Values) (*reply, *ASError, error) {
	timeout := callTimeout(p.timeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	header := http.Header{}
	if p.auth != nil {
		if err := p.auth.Authenticate(ctx, p.endpoint, form, header); err != nil {
			var e *claims.Error
			if errors.As(err, &e) {
				return nil, nil, e
			}
			return nil, nil, claims.Unavailable("client_auth", p.hints.clientAuth, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, nil, claims.Unavailable("bad_endpoint", p.hints.badEndpoint, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")

	client := p.client
	if client == nil {
		client = NewHTTPClient(timeout)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		p.observe(start, "transport")
		reason, hint := "unreachable", fmt.Sprintf(p.hints.unreachable, p.endpoint)
		if isTimeout(err) {
			reason, hint = "timeout", p.hints.timeout
		}
		return nil, nil, claims.Unavailable(reason, hint, fmt.Errorf("calling %s: %w", p.endpoint, err))
	}
	defer resp.Body.Close()
	body, err := httpbody.Read(resp.Body, responseLimit(p.maxBytes))
	if err != nil {
		p.observe(start, "bad_response")
		return nil, nil, claims.Unavailable("bad_response", p.hints.badResponse, fmt.Errorf("reading the response of %s: %w", p.endpoint, err))
	}
	if resp.StatusCode != http.StatusOK {
		code, desc, ok := parseASError(body)
		label := code
		if !ok {
			label = fmt.Sprintf("http_%d", resp.StatusCode)
		}
		p.observe(start, label)
		refusal := &ASError{Endpoint: p.endpoint, Status: resp.StatusCode, Code: code, Description: desc}
		if !ok && resp.StatusCode < 500 {
			refusal.Description = describeBody(resp, len(body))
		}
		return nil, refusal, nil
	}
	return &reply{resp: resp, body: body, start: start, post: p}, nil, nil
}

func (p *formPost) observe(start time.Time, errCode string) {
	if p.observer != nil {
		p.observer.UpstreamCall(p.kind, time.Since(start), errCode)
	}
}

// isTimeout reports a call that ran out of time: the caller's deadline, the
// client's Timeout, or a transport timeout (dial, TLS handshake, response
// headers), as the error says of itself rather than in its text.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// describeBody names what came back without quoting it (bodies may echo
// secrets or tokens).
func describeBody(resp *http.Response, n int) string {
	return fmt.Sprintf("HTTP %d, Content-Type %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), n)
}
