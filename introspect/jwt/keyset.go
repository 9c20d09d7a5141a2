package jwt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/tokengate/tokengate/introspect/internal/httpbody"
)

// KeySet supplies the keys that verify JWT access tokens. The
// implementations are RemoteKeySet (a JWKS URL that refreshes itself) and
// StaticKeySet (a file or an in-memory set).
//
// Implementations hand out public keys only, and only keys that may verify
// signatures: symmetric keys, keys whose "use" is not "sig", keys whose
// "key_ops" lack "verify", RSA keys under 2048 bits and curves other than
// P-256/P-384/P-521/Ed25519 are dropped when the set is loaded. The verifier
// checks the returned key again, so a third-party KeySet cannot weaken it.
//
// This package's sets also convert every key to its standard-library form
// (*rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey) when they load it
// and answer those checks then (verifyKey); the verifier uses that, and
// does the checks and the conversion per token only for other KeySets.
type KeySet interface {
	// Key returns the one key that has this kid and fits alg (its type and
	// curve match the algorithm family, and its own "alg", if set, equals
	// alg). There is no fallback to trying other keys (RFC 8725 §3.1,
	// §3.10). kid may be "": then exactly one key in the set must fit alg.
	//
	// It returns an error matching ErrUnknownKey when no key fits, and
	// ErrAmbiguousKey when several do; both are the token's fault. Any other
	// error means the keys could not be obtained at all (the gateway's
	// trouble). A remote set answers an unknown kid with at most one
	// refresh per MinRefreshInterval, shared by all concurrent callers.
	Key(ctx context.Context, kid string, alg jwa.SignatureAlgorithm) (jwk.Key, error)

	// Algorithms lists the asymmetric algorithms the keys declare (their
	// "alg"; for a key without one: RS256 for RSA, ES256/ES384/ES512 by
	// curve, EdDSA for Ed25519). Verifier uses it as the default
	// allowlist.
	Algorithms() []jwa.SignatureAlgorithm
}

// JWKSObserver is told about every JWKS fetch, for metrics. May be nil.
type JWKSObserver interface {
	JWKSRefresh(ok bool)
}

var (
	// ErrUnknownKey is returned by KeySet.Key when no key has the token's
	// kid and fits its alg (or, without kid, when no key fits the alg).
	ErrUnknownKey = errors.New("introspect: no key matches the token's kid and alg")
	// ErrAmbiguousKey is returned by KeySet.Key when a token has no kid (or
	// a kid the set uses twice) and more than one key fits its alg. Trying
	// them all in turn is what RFC 8725 §3.1 warns against, so we refuse.
	ErrAmbiguousKey = errors.New("introspect: several keys fit the token's alg and nothing tells them apart")
)

// snapshot is an immutable, already-filtered key set. Remote sets swap
// whole snapshots, so a refresh replaces the keys atomically and keys the AS
// removed stop being accepted.
type snapshot struct {
	keys  []*verifyKey
	byKid map[string][]*verifyKey
	algs  []jwa.SignatureAlgorithm
}

// skippedKey describes a key that was left out of a set, for the log.
type skippedKey struct {
	Index  int
	Kid    string
	Reason string
}

// newSnapshot keeps the usable public keys of keys, in order, each with its
// standard-library form (see verifyKey).
func newSnapshot(keys []jwk.Key) (*snapshot, []skippedKey) {
	s := &snapshot{byKid: make(map[string][]*verifyKey)}
	var skipped []skippedKey
	for i, k := range keys {
		// A file may hold private keys; only the public half is kept, so a
		// private key never sits in a long-lived verification set.
		pub, err := k.PublicKey()
		if err == nil {
			err = keyUsable(pub)
		}
		var vk *verifyKey
		if err == nil {
			vk, err = newVerifyKey(pub)
		}
		if err != nil {
			skipped = append(skipped, skippedKey{Index: i, Kid: k.KeyID(), Reason: err.Error()})
			continue
		}
		s.keys = append(s.keys, vk)
		if kid := pub.KeyID(); kid != "" {
			s.byKid[kid] = append(s.byKid[kid], vk)
		}
		if a := vk.declared; a != "" && !slices.Contains(s.algs, a) {
			s.algs = append(s.algs, a)
		}
	}
	return s, skipped
}

func (s *snapshot) len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// lookup picks the single key for (kid, alg). With a kid, only keys with
// that kid are candidates (RFC 7517 §4.5 allows one kid for keys of
// different types, so alg still has to single one out). Without a kid,
// every key is a candidate and exactly one may fit.
func (s *snapshot) lookup(kid string, alg jwa.SignatureAlgorithm) (*verifyKey, error) {
	if s == nil {
		return nil, ErrUnknownKey
	}
	candidates := s.keys
	if kid != "" {
		candidates = s.byKid[kid]
	}
	var found *verifyKey
	for _, k := range candidates {
		if !k.fits(alg) {
			continue
		}
		if found != nil {
			return nil, ErrAmbiguousKey
		}
		found = k
	}
	if found == nil {
		return nil, ErrUnknownKey
	}
	return found, nil
}

func (s *snapshot) algorithms() []jwa.SignatureAlgorithm {
	if s == nil {
		return nil
	}
	return slices.Clone(s.algs)
}

// StaticKeySet is a fixed key set, from a file or built in memory. It never
// refreshes; reload the configuration to change it.
type StaticKeySet struct {
	snap    *snapshot
	skipped []skippedKey
}

// NewStaticKeySet keeps the usable public keys of set. It fails when none
// is usable, since every token would then be rejected.
func NewStaticKeySet(set jwk.Set) (*StaticKeySet, error) {
	if set == nil {
		return nil, errors.New("introspect: key set is nil")
	}
	keys := make([]jwk.Key, 0, set.Len())
	for i := 0; i < set.Len(); i++ {
		k, _ := set.Key(i)
		keys = append(keys, k)
	}
	snap, skipped := newSnapshot(keys)
	if snap.len() == 0 {
		return nil, fmt.Errorf("introspect: key set has no usable signature verification key%s", skippedSummary(skipped))
	}
	return &StaticKeySet{snap: snap, skipped: skipped}, nil
}

// maxKeyFileBytes bounds LoadKeySetFile; a real JWKS is a few KiB.
const maxKeyFileBytes = 1 << 20

// LoadKeySetFile reads a JWK Set, a single JWK, or one or more PEM public
// keys (or certificates' keys) from path.
func LoadKeySetFile(path string) (*StaticKeySet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("introspect: reading key file: %w", err)
	}
	defer f.Close()
	raw, err := httpbody.Read(f, maxKeyFileBytes)
	if err != nil {
		return nil, fmt.Errorf("introspect: reading key file %s (limit %d bytes): %w", path, maxKeyFileBytes, err)
	}
	data := bytes.TrimSpace(raw)
	var set jwk.Set
	if bytes.HasPrefix(data, []byte("-----BEGIN")) {
		set, err = jwk.Parse(data, jwk.WithPEM(true))
	} else {
		set, err = jwk.Parse(data)
	}
	if err != nil {
		return nil, fmt.Errorf("introspect: parsing key file %s: %w", path, err)
	}
	ks, err := NewStaticKeySet(set)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return ks, nil
}

// Key implements KeySet.
func (s *StaticKeySet) Key(_ context.Context, kid string, alg jwa.SignatureAlgorithm) (jwk.Key, error) {
	vk, err := s.snap.lookup(kid, alg)
	if err != nil {
		return nil, err
	}
	return vk.jwk, nil
}

func (s *StaticKeySet) verifyKey(_ context.Context, kid string, alg jwa.SignatureAlgorithm) (*verifyKey, error) {
	return s.snap.lookup(kid, alg)
}

// Algorithms implements KeySet.
func (s *StaticKeySet) Algorithms() []jwa.SignatureAlgorithm { return s.snap.algorithms() }

// Len is the number of usable keys.
func (s *StaticKeySet) Len() int { return s.snap.len() }

// Skipped describes the keys of the source that were left out (not for
// signatures, too weak, unsupported), for a startup warning.
func (s *StaticKeySet) Skipped() []string {
	out := make([]string, 0, len(s.skipped))
	for _, sk := range s.skipped {
		d := fmt.Sprintf("key #%d", sk.Index)
		if sk.Kid != "" {
			d += fmt.Sprintf(" (kid %q)", sk.Kid)
		}
		out = append(out, d+": "+sk.Reason)
	}
	return out
}

func skippedSummary(skipped []skippedKey) string {
	if len(skipped) == 0 {
		return ""
	}
	var b bytes.Buffer
	b.WriteString(" (skipped:")
	for i, sk := range skipped {
		if i > 0 {
			b.WriteByte(';')
		}
		fmt.Fprintf(&b, " key #%d", sk.Index)
		if sk.Kid != "" {
			fmt.Fprintf(&b, " kid %q", sk.Kid)
		}
		b.WriteString(": ")
		b.WriteString(sk.Reason)
	}
	b.WriteByte(')')
	return b.String()
}

// Interface guards
var (
	_ KeySet         = (*StaticKeySet)(nil)
	_ KeySet         = (*RemoteKeySet)(nil)
	_ preparedKeySet = (*StaticKeySet)(nil)
	_ preparedKeySet = (*RemoteKeySet)(nil)
)
