package dpop

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"time"
)

// ReplayCache remembers proof identifiers (a hash of the key thumbprint and
// the jti) for ttl. Once reports fresh=true the first time it sees id
// within ttl, false on every later call.
type ReplayCache interface {
	Once(ctx context.Context, id [32]byte, ttl time.Duration) (fresh bool, err error)
}

// ErrReplayCacheFull is returned when the memory cache holds MaxEntries
// unexpired identifiers: failing closed (503) is safer than forgetting a
// jti that may still be replayed.
var ErrReplayCacheFull = errors.New("dpop: replay cache full")

// DefaultMaxReplayEntries bounds the memory replay cache: a minute's
// window at about 8,000 new proofs per second.
const DefaultMaxReplayEntries = 1 << 19

const replayShards = 64

// MemoryReplay is a ReplayCache in process memory, sharded to keep lock
// contention low. Expired entries are swept from a shard as it grows, so
// no goroutine is needed.
type MemoryReplay struct {
	now      func() time.Time
	perShard int
	shards   [replayShards]replayShard
}

type replayShard struct {
	mu      sync.Mutex
	seen    map[[32]byte]int64 // id -> expiry, unix nanos
	sweepAt int                // sweep when len reaches this
}

// NewMemoryReplay returns a memory cache for at most maxEntries live
// identifiers (0: DefaultMaxReplayEntries). now nil means time.Now.
func NewMemoryReplay(maxEntries int, now func() time.Time) *MemoryReplay {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxReplayEntries
	}
	if now == nil {
		now = time.Now
	}
	m := &MemoryReplay{now: now, perShard: max(maxEntries/replayShards, 1)}
	for i := range m.shards {
		m.shards[i].seen = map[[32]byte]int64{}
		m.shards[i].sweepAt = min(1024, m.perShard)
	}
	return m
}

// Once implements ReplayCache.
func (m *MemoryReplay) Once(_ context.Context, id [32]byte, ttl time.Duration) (bool, error) {
	s := &m.shards[binary.LittleEndian.Uint64(id[:8])%replayShards]
	now := m.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp, ok := s.seen[id]; ok && exp > now {
		return false, nil
	}
	if len(s.seen) >= s.sweepAt {
		for k, exp := range s.seen {
			if exp <= now {
				delete(s.seen, k)
			}
		}
		if len(s.seen) >= m.perShard {
			return false, ErrReplayCacheFull
		}
		// Sweep again when the shard has doubled: amortised O(1).
		s.sweepAt = min(max(2*len(s.seen), 1024), m.perShard)
	}
	s.seen[id] = now + int64(ttl)
	return true, nil
}

// SharedReplay is asked after the local cache, so that a fleet of gateways
// refuses a proof replayed to another member. answered=false means the
// shared store could not be asked (not configured, or unreachable).
type SharedReplay interface {
	SharedOnce(ctx context.Context, id [32]byte, ttl time.Duration) (fresh, answered bool)
}

// Tiered is the local cache, then the shared one. When the shared store
// does not answer, the local answer stands: a Redis outage narrows replay
// protection to each gateway rather than refusing every DPoP request (the
// same "Redis is an accelerator" rule as the decision cache).
type Tiered struct {
	Local  ReplayCache
	Shared SharedReplay // nil: local only
}

// Once implements ReplayCache.
func (t Tiered) Once(ctx context.Context, id [32]byte, ttl time.Duration) (bool, error) {
	fresh, err := t.Local.Once(ctx, id, ttl)
	if err != nil || !fresh || t.Shared == nil {
		return fresh, err
	}
	if f, answered := t.Shared.SharedOnce(ctx, id, ttl); answered {
		return f, nil
	}
	return true, nil
}
