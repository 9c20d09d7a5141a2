package jwt

import (
	"crypto/sha256"
	"hash"
	"strings"
	"sync"
	"unsafe"
)

// TokenHash is a token's SHA-256, with the SHA-256 of its JWS signing input
// (the token up to its second dot) read off the same pass: a gateway hashes
// every token for its cache key, and on a miss the verifier needs the
// signing input's digest for RS256, ES256 and PS256 — hashing most of the
// token twice otherwise. Only HashToken makes one, bound to that token
// string.
type TokenHash struct {
	// Sum is SHA-256 of the whole token.
	Sum [sha256.Size]byte

	token string // the token hashed: VerifyHashed uses input only for it
	n     int    // len(signing input); 0 if the token has fewer than two dots
	input [sha256.Size]byte
}

// hashers are pooled: a hash.Hash escapes to the heap.
var hashers = sync.Pool{New: func() any { return &pooledHash{h: sha256.New()} }}

type pooledHash struct {
	h   hash.Hash
	out [sha256.Size]byte // Sum's buffer: a stack one would escape
}

// HashToken hashes token in one pass. It does not allocate.
func HashToken(token string) TokenHash {
	th := TokenHash{token: token, n: signingInputLen(token)}
	// Hashing only reads: viewing the string's bytes saves a copy.
	b := unsafe.Slice(unsafe.StringData(token), len(token))
	if th.n == 0 {
		th.Sum = sha256.Sum256(b)
		return th
	}
	p := hashers.Get().(*pooledHash)
	p.h.Reset()
	p.h.Write(b[:th.n])
	th.input = [sha256.Size]byte(p.h.Sum(p.out[:0])) // Sum leaves the state running
	p.h.Write(b[th.n:])
	th.Sum = [sha256.Size]byte(p.h.Sum(p.out[:0]))
	hashers.Put(p)
	return th
}

// of reports whether th holds the digest of token's signing input, which
// ends at n: the very same string (its bytes, not a copy that could have
// been swapped in between), hashed by HashToken.
func (th *TokenHash) of(token string, n int) bool {
	return th != nil && th.n == n && n > 0 && len(th.token) == len(token) &&
		unsafe.StringData(th.token) == unsafe.StringData(token)
}

// signingInputLen is the length of token's JWS signing input (up to its
// second dot), or 0 if it has fewer than two dots.
func signingInputLen(token string) int {
	i := strings.IndexByte(token, '.')
	if i < 0 {
		return 0
	}
	j := strings.IndexByte(token[i+1:], '.')
	if j < 0 {
		return 0
	}
	return i + 1 + j
}
