package caddymodule

import (
	"fmt"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"

	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/introspect/upstreamtoken"
)

// decisionMemo is what the handler keeps per decision (Decision.Memo)
// rather than rebuilding on every request that carries its token: the
// forward_claim header values of claims outside the decision's fields, and
// the upstream tokens minted for it. It is made only for a decision that
// needs one of them: a memo is part of what every cached decision costs,
// and the quick start's decisions (placeholders, forward_claim sub) need
// none.
//
// The forward_claim values depend on a handler's claim list as well as on
// the decision: several handlers may share one decision (one validator, or
// Redis), so those are kept per claim list (forwardValues).
type decisionMemo struct {
	d   *introspect.Decision
	fwd atomic.Pointer[forwardValues]
	// upstream keeps the upstream tokens minted for the decision, so that
	// they are signed once per token lifetime, not per request.
	upstream atomic.Pointer[upstreamtoken.Reuse]
	// cnf is the token's RFC 7800 confirmation, read once (decoding it is
	// JSON work); only bound tokens get a memo for it.
	cnf atomic.Pointer[confirmation]
}

// confirmation is introspect.Confirmation's answer.
type confirmation struct {
	jkt, x5t  string
	malformed bool
}

// noConfirmation marks a memo whose decision's cnf binds nothing.
var noConfirmation = new(confirmation)

// confirmationOf is d's cnf claim: nil, and no work, for the tokens that
// carry none; read once per decision (kept in its memo) for those that do.
func confirmationOf(d *introspect.Decision) *confirmation {
	if !d.HasConfirmation() {
		return nil
	}
	m := memoOf(d)
	c := m.cnf.Load()
	if c == nil {
		c = noConfirmation
		if jkt, x5t, malformed := introspect.Confirmation(d); jkt != "" || x5t != "" || malformed {
			c = &confirmation{jkt: jkt, x5t: x5t, malformed: malformed}
		}
		m.cnf.Store(c)
	}
	if c == noConfirmation {
		return nil
	}
	return c
}

func newDecisionMemo(d *introspect.Decision) any { return &decisionMemo{d: d} }

// memoOf returns d's memo, building it on first use.
func memoOf(d *introspect.Decision) *decisionMemo {
	if m, ok := d.Memo(newDecisionMemo).(*decisionMemo); ok {
		return m
	}
	// Someone else's memo (Decision.Memo has one slot): build ours for
	// this request only.
	return newDecisionMemo(d).(*decisionMemo)
}

// The placeholders an accepted token sets.
const (
	phUserID   = "http.auth.user.id"
	phClientID = "http.auth.bearer.client_id"
	phScope    = "http.auth.bearer.scope"
	phACR      = "http.auth.bearer.acr"
	phAuthTime = "http.auth.bearer.auth_time"
	phClaims   = "http.auth.bearer.claims."
)

// fixedPlaceholders are the placeholders lookup answers besides claims.
var fixedPlaceholders = [...]string{phUserID, phClientID, phScope, phACR, phAuthTime}

// placeholder answers the fixed placeholders and
// {http.auth.bearer.claims.<name>} (a missing claim is "") from d, when a
// placeholder is used: nothing is boxed for a request that uses none.
func placeholder(d *introspect.Decision, key string) (any, bool) {
	switch key {
	case phUserID:
		return d.UserID(), true
	case phClientID:
		return d.ClientID(), true
	case phScope:
		return d.ScopeString(), true
	case phACR:
		return d.ACR(), true
	case phAuthTime:
		return authTimeString(d.AuthTime()), true
	}
	name, ok := strings.CutPrefix(key, phClaims)
	if !ok {
		return nil, false
	}
	v, ok := d.Claim(name)
	if !ok {
		return "", true
	}
	return claimString(v), true
}

// setPlaceholders makes the Replacer answer d's placeholders. They used to
// be Set one by one, which costs the Replacer's static map an allocation
// per request; one function answers them now (a 16-byte closure per
// request), and the same keys are deleted from the static map, so that a
// value an earlier handler set (vars http.auth.user.id …) still gives way
// to the token's, as with Set. A later Set still overrides them: static
// values are asked first.
func setPlaceholders(repl *caddy.Replacer, d *introspect.Decision) {
	for _, k := range fixedPlaceholders {
		repl.Delete(k)
	}
	repl.Map(func(key string) (any, bool) { return placeholder(d, key) })
}

// reuse is the decision's upstream-token slots.
func (m *decisionMemo) reuse() *upstreamtoken.Reuse {
	if r := m.upstream.Load(); r != nil {
		return r
	}
	m.upstream.CompareAndSwap(nil, new(upstreamtoken.Reuse))
	return m.upstream.Load()
}

// forwardSpec is a forward_claim list as the memo keys it: the claim paths,
// in order (the header names stay with each handler). Equal lists share one
// (internForwardSpec), so that a decision keeps one set of values per
// distinct list, however many routes and config reloads use it.
type forwardSpec struct {
	paths []string
	// direct: every path is "sub", read from the decision's own field on
	// each request at no cost, so no memo is needed (the quick start's
	// forward_claim).
	direct bool
}

var forwardSpecs struct {
	sync.Mutex
	m map[string]*forwardSpec
}

func internForwardSpec(paths []string) *forwardSpec {
	key := fmt.Sprintf("%q", paths)
	forwardSpecs.Lock()
	defer forwardSpecs.Unlock()
	if s, ok := forwardSpecs.m[key]; ok {
		return s
	}
	if forwardSpecs.m == nil {
		forwardSpecs.m = map[string]*forwardSpec{}
	}
	s := &forwardSpec{paths: append([]string(nil), paths...), direct: true}
	for _, p := range paths {
		s.direct = s.direct && p == "sub"
	}
	forwardSpecs.m[key] = s
	return s
}

// forwardValues are one claim list's header values for a decision ("": the
// claim is absent or empty, no header), in a short list, one per list.
type forwardValues struct {
	spec *forwardSpec
	vals []string
	next *forwardValues
}

// maxForwardLists bounds the lists a decision keeps values for; past it
// (more distinct forward_claim lists than that use one decision) the values
// are computed per request.
const maxForwardLists = 8

// forwarded returns the header values of spec's claims for the decision.
func (m *decisionMemo) forwarded(spec *forwardSpec) []string {
	head := m.fwd.Load()
	n := 0
	for f := head; f != nil; f = f.next {
		if f.spec == spec {
			return f.vals
		}
		n++
	}
	vals := forwardClaimValues(m.d, spec.paths)
	if n < maxForwardLists {
		// Lost races only mean that another request's copy is kept.
		m.fwd.CompareAndSwap(head, &forwardValues{spec: spec, vals: vals, next: head})
	}
	return vals
}

// forwardClaimValues looks the claims up and makes them header-safe.
func forwardClaimValues(d *introspect.Decision, paths []string) []string {
	vals := make([]string, len(paths))
	for i, p := range paths {
		if v, ok := d.Claim(p); ok {
			vals[i] = headerSafe(claimString(v))
		}
	}
	return vals
}

// prepareForwardClaims interns the handler's claim list and canonicalises
// its header names once.
func (h *Handler) prepareForwardClaims() {
	if len(h.ForwardClaims) == 0 {
		h.fwd, h.fwdHeaders = nil, nil
		return
	}
	paths := make([]string, len(h.ForwardClaims))
	h.fwdHeaders = make([]string, len(h.ForwardClaims))
	for i, fc := range h.ForwardClaims {
		paths[i] = fc.Claim
		h.fwdHeaders[i] = textproto.CanonicalMIMEHeaderKey(fc.Header)
	}
	h.fwd = internForwardSpec(paths)
}
