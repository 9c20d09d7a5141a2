package jwt

import (
	"hash/maphash"
	"strings"
	"sync/atomic"
)

// headerMemo remembers the headers that passed parseHeader. An issuer signs
// every token with a handful of headers (one per key), so the cold path
// need not decode and read the same header again for each new token: the
// header rules depend on the header's bytes and the verifier's settings
// alone. It is a small direct-mapped table: bounded whatever callers send,
// and a flood of made-up headers only costs the cold path what it cost
// without the memo.
type headerMemo struct {
	seed  maphash.Seed
	slots [64]atomic.Pointer[memoHeader]
}

type memoHeader struct {
	seg string // the header segment, copied: it must not keep a token alive
	hdr parsedHeader
}

func newHeaderMemo() *headerMemo { return &headerMemo{seed: maphash.MakeSeed()} }

func (m *headerMemo) slot(seg string) *atomic.Pointer[memoHeader] {
	return &m.slots[maphash.String(m.seed, seg)%uint64(len(m.slots))]
}

// get returns the parsed header of seg if it is remembered.
func (m *headerMemo) get(seg string) (parsedHeader, bool) {
	if e := m.slot(seg).Load(); e != nil && e.seg == seg {
		return e.hdr, true
	}
	return parsedHeader{}, false
}

// put remembers a header that passed every header rule. Headers with a
// jwk member or a jwx-era type error are not: they are judged again each
// time, as before.
func (m *headerMemo) put(seg string, h parsedHeader) {
	if h.jwxErr != nil || h.jwk != nil {
		return
	}
	m.slot(seg).Store(&memoHeader{seg: strings.Clone(seg), hdr: h})
}
