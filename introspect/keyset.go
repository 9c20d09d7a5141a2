package introspect

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
	// curve, EdDSA for Ed25519). JWTVerifier uses it as the default
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

// jwtSupportedAlgs is the universe of algorithms a JWT access token may be
// signed with here: asymmetric only (RFC 8725 §3.1/§3.2). "none" and HS*
// are not in it and cannot be configured: a resource server that shares a
// MAC key with the AS could mint tokens itself, and HS* with a public key
// as the secret is the classic algorithm-confusion attack.
var jwtSupportedAlgs = []jwa.SignatureAlgorithm{
	jwa.RS256, jwa.RS384, jwa.RS512,
	jwa.PS256, jwa.PS384, jwa.PS512,
	jwa.ES256, jwa.ES384, jwa.ES512,
	jwa.EdDSA,
}

func jwtIsSupportedAlg(alg jwa.SignatureAlgorithm) bool {
	return slices.Contains(jwtSupportedAlgs, alg)
}

// jwtMinRSABits is the minimum RSA modulus for RS*/PS* (RFC 7518 §3.3,
// §3.5: "A key of size 2048 bits or larger MUST be used").
const jwtMinRSABits = 2048

// jwtKeyUsable reports why key must never verify a signature, or nil.
// It is applied when a set is loaded and again by the verifier.
func jwtKeyUsable(key jwk.Key) error {
	// RFC 7517 §4.2: "use" is "sig" or "enc"; only "sig" keys verify.
	if u := key.KeyUsage(); u != "" && u != string(jwk.ForSignature) {
		return fmt.Errorf("key use is %q, not sig", u)
	}
	// RFC 7517 §4.3: with key_ops, the key may only do what it lists.
	if ops := key.KeyOps(); len(ops) > 0 && !slices.Contains(ops, jwk.KeyOpVerify) {
		return errors.New("key_ops does not include verify")
	}
	// A key that declares an algorithm we never accept (an encryption
	// algorithm such as RSA-OAEP, HS256, none) is not a signing key for us.
	if a := key.Algorithm().String(); a != "" {
		if !jwtIsSupportedAlg(jwa.SignatureAlgorithm(a)) {
			return fmt.Errorf("key alg %q is not an accepted signature algorithm", a)
		}
		if !jwtKeyFits(key, jwa.SignatureAlgorithm(a)) {
			return fmt.Errorf("key alg %q does not match its key type %q", a, key.KeyType())
		}
	}
	switch k := key.(type) {
	case jwk.RSAPublicKey:
		if bits := jwtBitLen(k.N()); bits < jwtMinRSABits {
			return fmt.Errorf("RSA key is %d bits, below the %d required by RFC 7518 §3.3", bits, jwtMinRSABits)
		}
	case jwk.ECDSAPublicKey:
		switch k.Crv() {
		case jwa.P256, jwa.P384, jwa.P521:
		default:
			return fmt.Errorf("EC curve %q is not supported", k.Crv())
		}
	case jwk.OKPPublicKey:
		if k.Crv() != jwa.Ed25519 {
			return fmt.Errorf("OKP curve %q is not a signature curve", k.Crv())
		}
	default:
		// Symmetric keys land here: they are never used (no HS*).
		return fmt.Errorf("key type %q (%T) cannot verify an accepted algorithm", key.KeyType(), key)
	}
	return key.Validate()
}

// jwtBitLen is the bit length of a big-endian unsigned integer.
func jwtBitLen(b []byte) int {
	b = bytes.TrimLeft(b, "\x00")
	if len(b) == 0 {
		return 0
	}
	n := (len(b) - 1) * 8
	for top := b[0]; top != 0; top >>= 1 {
		n++
	}
	return n
}

// jwtKeyFits reports whether key may verify a signature made with alg: the
// key type (and curve) must be the one the algorithm family is defined for,
// and the key's own "alg", if set, must be exactly alg (RFC 8725 §3.1,
// RFC 7517 §4.4). This is what stops HS256-with-the-RSA-public-key and
// ES256-with-an-RSA-key confusions.
func jwtKeyFits(key jwk.Key, alg jwa.SignatureAlgorithm) bool {
	if a := key.Algorithm().String(); a != "" && a != string(alg) {
		return false
	}
	switch alg {
	case jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512:
		_, ok := key.(jwk.RSAPublicKey)
		return ok
	case jwa.ES256, jwa.ES384, jwa.ES512:
		k, ok := key.(jwk.ECDSAPublicKey)
		return ok && k.Crv() == jwtCurveFor[alg]
	case jwa.EdDSA:
		k, ok := key.(jwk.OKPPublicKey)
		return ok && k.Crv() == jwa.Ed25519
	}
	return false
}

// jwtCurveFor pins each ECDSA algorithm to its curve (RFC 7518 §3.4).
var jwtCurveFor = map[jwa.SignatureAlgorithm]jwa.EllipticCurveAlgorithm{
	jwa.ES256: jwa.P256, jwa.ES384: jwa.P384, jwa.ES512: jwa.P521,
}

// jwtDeclaredAlg is the algorithm a key is for: its "alg", or for a key
// without one the algorithm its type implies (RS256 is the RFC 9068 §2.1 /
// OpenID default for RSA; an EC curve names its ES* algorithm).
func jwtDeclaredAlg(key jwk.Key) jwa.SignatureAlgorithm {
	if a := key.Algorithm().String(); a != "" {
		return jwa.SignatureAlgorithm(a)
	}
	switch k := key.(type) {
	case jwk.RSAPublicKey:
		return jwa.RS256
	case jwk.ECDSAPublicKey:
		for alg, crv := range jwtCurveFor {
			if k.Crv() == crv {
				return alg
			}
		}
	case jwk.OKPPublicKey:
		return jwa.EdDSA
	}
	return ""
}

// jwksSnapshot is an immutable, already-filtered key set. Remote sets swap
// whole snapshots, so a refresh replaces the keys atomically and keys the AS
// removed stop being accepted.
type jwksSnapshot struct {
	keys  []jwk.Key
	byKid map[string][]jwk.Key
	algs  []jwa.SignatureAlgorithm
}

// jwksSkipped describes a key that was left out of a set, for the log.
type jwksSkipped struct {
	Index  int
	Kid    string
	Reason string
}

// newJWKSSnapshot keeps the usable public keys of keys, in order.
func newJWKSSnapshot(keys []jwk.Key) (*jwksSnapshot, []jwksSkipped) {
	s := &jwksSnapshot{byKid: make(map[string][]jwk.Key)}
	var skipped []jwksSkipped
	for i, k := range keys {
		// A file may hold private keys; only the public half is kept, so a
		// private key never sits in a long-lived verification set.
		pub, err := k.PublicKey()
		if err == nil {
			err = jwtKeyUsable(pub)
		}
		if err != nil {
			skipped = append(skipped, jwksSkipped{Index: i, Kid: k.KeyID(), Reason: err.Error()})
			continue
		}
		s.keys = append(s.keys, pub)
		if kid := pub.KeyID(); kid != "" {
			s.byKid[kid] = append(s.byKid[kid], pub)
		}
		if a := jwtDeclaredAlg(pub); a != "" && !slices.Contains(s.algs, a) {
			s.algs = append(s.algs, a)
		}
	}
	return s, skipped
}

func (s *jwksSnapshot) len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// lookup picks the single key for (kid, alg). With a kid, only keys with
// that kid are candidates (RFC 7517 §4.5 allows one kid for keys of
// different types, so alg still has to single one out). Without a kid,
// every key is a candidate and exactly one may fit.
func (s *jwksSnapshot) lookup(kid string, alg jwa.SignatureAlgorithm) (jwk.Key, error) {
	if s == nil {
		return nil, ErrUnknownKey
	}
	candidates := s.keys
	if kid != "" {
		candidates = s.byKid[kid]
	}
	var found jwk.Key
	for _, k := range candidates {
		if !jwtKeyFits(k, alg) {
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

func (s *jwksSnapshot) algorithms() []jwa.SignatureAlgorithm {
	if s == nil {
		return nil
	}
	return slices.Clone(s.algs)
}

// StaticKeySet is a fixed key set, from a file or built in memory. It never
// refreshes; reload the configuration to change it.
type StaticKeySet struct {
	snap    *jwksSnapshot
	skipped []jwksSkipped
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
	snap, skipped := newJWKSSnapshot(keys)
	if snap.len() == 0 {
		return nil, fmt.Errorf("introspect: key set has no usable signature verification key%s", jwksSkippedSummary(skipped))
	}
	return &StaticKeySet{snap: snap, skipped: skipped}, nil
}

// jwtMaxKeyFileBytes bounds LoadKeySetFile; a real JWKS is a few KiB.
const jwtMaxKeyFileBytes = 1 << 20

// LoadKeySetFile reads a JWK Set, a single JWK, or one or more PEM public
// keys (or certificates' keys) from path.
func LoadKeySetFile(path string) (*StaticKeySet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("introspect: reading key file: %w", err)
	}
	defer f.Close()
	raw, err := httpbody.Read(f, jwtMaxKeyFileBytes)
	if err != nil {
		return nil, fmt.Errorf("introspect: reading key file %s (limit %d bytes): %w", path, jwtMaxKeyFileBytes, err)
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

func jwksSkippedSummary(skipped []jwksSkipped) string {
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
	_ KeySet = (*StaticKeySet)(nil)
	_ KeySet = (*RemoteKeySet)(nil)
)
