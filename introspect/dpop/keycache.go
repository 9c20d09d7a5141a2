package dpop

import (
	"crypto"
	"sync"
)

// maxCachedKeys bounds a Verifier's parsed proof keys; when it is reached
// the cache starts over (a client that sends a new key with every proof
// only ever costs a parse, as without the cache).
const maxCachedKeys = 1024

// keyCache keeps the public keys of proofs that verified, with their
// thumbprints: a client signs its proofs with one key for a long time, and
// decoding the jwk members, checking the point and hashing the thumbprint
// is then work per key, not per request. The entry is found by every
// member the key and the thumbprint are made of (and the alg the key was
// checked against), so it is exactly what parsing the jwk again would
// give; the signature is still checked with it on every proof.
type keyCache struct {
	mu sync.RWMutex
	m  map[keyID]parsedKey
}

type keyID struct {
	alg *algorithm
	jwk publicJWK
}

type parsedKey struct {
	pub        crypto.PublicKey
	thumbprint string
}

func (c *keyCache) get(alg *algorithm, jwk *publicJWK) (parsedKey, bool) {
	if c == nil {
		return parsedKey{}, false
	}
	c.mu.RLock()
	k, ok := c.m[keyID{alg, *jwk}]
	c.mu.RUnlock()
	return k, ok
}

func (c *keyCache) put(alg *algorithm, jwk *publicJWK, k parsedKey) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedKeys {
		c.m = make(map[keyID]parsedKey)
	}
	c.m[keyID{alg, *jwk}] = k
	c.mu.Unlock()
}
