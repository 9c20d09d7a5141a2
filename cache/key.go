package cache

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
	"sync"
	"unsafe"
)

// Key identifies a cached decision. It is a digest of the token, never the
// token itself, so neither the memory tier, Redis, nor a log line ever holds a
// credential.
type Key [32]byte

// fingerprintLen is the length of a Fingerprint in hex characters (8 bytes).
// 64 bits is short enough to paste into an admin request and long enough that
// an accidental collision between live tokens is practically impossible.
const fingerprintLen = 16

// Fingerprint returns the first 16 hex characters of the key: the short id
// used in logs and for admin eviction by hash.
func (k Key) Fingerprint() string {
	return hex.EncodeToString(k[:fingerprintLen/2])
}

// String returns the full key as 64 lowercase hex characters.
func (k Key) String() string {
	return hex.EncodeToString(k[:])
}

// hasFingerprint reports whether the key's fingerprint equals fp, which must
// already be validated and decoded.
func (k Key) hasFingerprint(fp [fingerprintLen / 2]byte) bool {
	return [fingerprintLen / 2]byte(k[:fingerprintLen/2]) == fp
}

// ParseKey parses the 64-hex-character form produced by Key.String.
func ParseKey(s string) (Key, error) {
	var k Key
	if len(s) != 2*len(k) {
		return k, errors.New("cache: key must be 64 hex characters")
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return Key{}, errors.New("cache: key must be 64 hex characters")
	}
	return k, nil
}

// parseFingerprint validates an admin-supplied fingerprint. Validation is
// strict because the fingerprint ends up in a Redis SCAN MATCH pattern, where
// a stray '*' or '?' would widen the eviction to unrelated keys.
func parseFingerprint(fp string) ([fingerprintLen / 2]byte, error) {
	var b [fingerprintLen / 2]byte
	if len(fp) != fingerprintLen {
		return b, errors.New("cache: fingerprint must be 16 hex characters")
	}
	if _, err := hex.Decode(b[:], []byte(strings.ToLower(fp))); err != nil {
		return b, errors.New("cache: fingerprint must be 16 hex characters")
	}
	return b, nil
}

// Keyer derives keys from tokens. With no secret it is plain SHA-256; with a
// secret it is HMAC-SHA256, so that someone who can read Redis (or the logs'
// fingerprints) cannot confirm a guessed or leaked token by hashing it. The
// zero Keyer is a valid plain SHA-256 keyer. A Keyer is safe for concurrent
// use and cheap to copy. Gateways sharing a Redis tier must use the same
// secret, or they will neither share decisions nor evict each other's keys.
type Keyer struct {
	// macs is nil for plain SHA-256. HMAC state is not safe for concurrent
	// use and hmac.New allocates, so keyed hashers are pooled and reset: the
	// Key hot path then allocates nothing.
	macs *sync.Pool
}

// NewKeyer returns a Keyer; an empty secret selects plain SHA-256.
func NewKeyer(secret []byte) Keyer {
	if len(secret) == 0 {
		return Keyer{}
	}
	// Copy so that a caller reusing its buffer cannot change our keys.
	s := append([]byte(nil), secret...)
	return Keyer{macs: &sync.Pool{New: func() any {
		return &pooledMAC{h: hmac.New(sha256.New, s)}
	}}}
}

// pooledMAC carries its own output buffer: passing a stack buffer to the
// interface method Sum would make it escape and allocate on every call.
type pooledMAC struct {
	h   hash.Hash
	out [sha256.Size]byte
}

// Keyed reports whether the Keyer uses a secret (HMAC).
func (k Keyer) Keyed() bool { return k.macs != nil }

// Key derives the cache key of a token. It does not allocate.
func (k Keyer) Key(token string) Key {
	// Hashing reads the bytes and never retains or modifies them, so viewing
	// the string's memory as a slice is safe and avoids a copy of the token
	// (which would allocate for tokens longer than 32 bytes).
	b := unsafe.Slice(unsafe.StringData(token), len(token))
	if k.macs == nil {
		return Key(sha256.Sum256(b))
	}
	m := k.macs.Get().(*pooledMAC)
	m.h.Reset()
	m.h.Write(b)
	key := Key(m.h.Sum(m.out[:0]))
	k.macs.Put(m)
	return key
}
