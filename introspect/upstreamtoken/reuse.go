package upstreamtoken

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/introspect"
)

// reuseSlots bounds the tokens kept per decision. One is the common case
// (one upstream_token setting per validator); routes that share cached
// decisions but mint for different upstreams each get a slot, and a config
// reload's new Minter takes the slot of a token past its renewal.
const reuseSlots = 4

// Reuse holds the tokens minted for one cached decision, so that signing is
// paid once per decision and token lifetime rather than once per request.
// It lives with the decision (and goes when the cache drops the decision),
// so memory is bounded by the cache's max_entries times reuseSlots tokens.
// The zero value is ready to use; a Reuse must not be copied after first
// use.
type Reuse struct {
	// mu makes concurrent first requests for a decision wait for one
	// signature rather than each sign their own; lookups do not take it.
	mu    sync.Mutex
	slots [reuseSlots]atomic.Pointer[Token]
}

// For returns m's token for d: the one in reuse while it has most of its
// life left (at least half; see Mint), else a newly signed one, which it
// keeps there. With a nil reuse it signs every time.
//
// A reused token carries the same jti on every request within its life:
// upstreams must not use jti to detect replays of a request.
func (m *Minter) For(d *introspect.Decision, reuse *Reuse) (*Token, error) {
	if reuse == nil {
		return m.Mint(d)
	}
	if t := reuse.find(m.id, m.now()); t != nil {
		return t, nil
	}
	reuse.mu.Lock()
	defer reuse.mu.Unlock()
	now := m.now()
	if t := reuse.find(m.id, now); t != nil {
		return t, nil // another request signed it while this one waited
	}
	t, err := m.mint(d, now)
	if err != nil {
		return nil, err
	}
	reuse.keep(t)
	return t, nil
}

func (r *Reuse) find(minter uint64, now time.Time) *Token {
	for i := range r.slots {
		if t := r.slots[i].Load(); t != nil && t.minter == minter && now.Before(t.renewAt) {
			return t
		}
	}
	return nil
}

// keep stores t in the slot of its minter's previous token, else an empty
// one, else the one due for renewal soonest (a token past its renewal is
// never handed out again, so it is the first to go). Called with r.mu held.
func (r *Reuse) keep(t *Token) {
	victim, empty := -1, -1
	for i := range r.slots {
		old := r.slots[i].Load()
		switch {
		case old == nil:
			if empty < 0 {
				empty = i
			}
		case old.minter == t.minter:
			r.slots[i].Store(t)
			return
		case victim < 0 || old.renewAt.Before(r.slots[victim].Load().renewAt):
			victim = i
		}
	}
	if empty >= 0 {
		victim = empty
	}
	r.slots[victim].Store(t)
}
