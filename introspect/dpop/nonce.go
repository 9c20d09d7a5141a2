package dpop

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/introspect/claims"
)

// CodeUseNonce is RFC 9449 §9's error code: the proof must carry the
// server's current nonce, which the response's DPoP-Nonce header gives.
const CodeUseNonce claims.Code = "use_dpop_nonce"

// Nonces issues and checks resource-server nonces (RFC 9449 §9). They are
// stateless: a nonce is an HMAC of a time step, so a fleet whose gateways
// share Secret accepts each other's nonces with no shared store, and a
// nonce is good for its step and the next one. A nonce limits how long a
// proof made in advance (by a client whose key an attacker briefly
// controls) stays usable, beyond what iat alone bounds (§11.2).
type Nonces struct {
	// Secret keys the HMAC. Nil: a random one, good for this process only.
	Secret []byte
	// Step is how long one nonce is issued for. Default DefaultWindow.
	Step time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// steps are the nonces of the last step asked about and the one
	// before: an HMAC per step, not per request.
	steps atomic.Pointer[nonceSteps]
}

type nonceSteps struct {
	step      int64
	cur, prev string
}

// Init applies the defaults.
func (n *Nonces) Init() {
	if len(n.Secret) == 0 {
		n.Secret = make([]byte, 32)
		_, _ = rand.Read(n.Secret)
	}
	if n.Step <= 0 {
		n.Step = DefaultWindow
	}
	if n.Now == nil {
		n.Now = time.Now
	}
}

func (n *Nonces) at(step int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(step))
	m := hmac.New(sha256.New, n.Secret)
	m.Write([]byte("tokengate dpop nonce\x00"))
	m.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

func (n *Nonces) step() int64 { return n.Now().UnixNano() / int64(n.Step) }

// current returns this step's nonces, computing them once per step.
func (n *Nonces) current() *nonceSteps {
	now := n.step()
	if c := n.steps.Load(); c != nil && c.step == now {
		return c
	}
	c := &nonceSteps{step: now, cur: n.at(now), prev: n.at(now - 1)}
	n.steps.Store(c)
	return c
}

// Current is the nonce to hand out now (the DPoP-Nonce header).
func (n *Nonces) Current() string { return n.current().cur }

// Valid reports whether s is this step's nonce or the previous one's.
func (n *Nonces) Valid(s string) bool {
	c := n.current()
	return subtle.ConstantTimeCompare([]byte(s), []byte(c.cur)) == 1 ||
		subtle.ConstantTimeCompare([]byte(s), []byte(c.prev)) == 1
}
