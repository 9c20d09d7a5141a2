package jwt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/tokengate/tokengate/introspect/internal/jwssig"
)

// verifyKey is a key of a key set made ready for the verifier when the set
// is loaded: the public JWK (which passed keyUsable), its standard-library
// form, and the answers of declaredAlg and keyFits for every supported
// algorithm. A snapshot is immutable, so these answers are the ones the
// verifier would get by asking again for every token, without the cost.
type verifyKey struct {
	jwk jwk.Key
	// pub is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
	pub      any
	declared jwa.SignatureAlgorithm // declaredAlg(jwk)
	fitBits  uint16                 // bit algIndex(alg): keyFits(jwk, alg)
}

// preparedKeySet is implemented by this package's key sets (StaticKeySet,
// RemoteKeySet): the verifier asks them for a verifyKey. Any other KeySet
// goes through KeySet.Key, and its key is checked and converted per token.
type preparedKeySet interface {
	verifyKey(ctx context.Context, kid string, alg jwa.SignatureAlgorithm) (*verifyKey, error)
}

// algIndex numbers the supported algorithms (their place in supportedAlgs),
// -1 for any other.
func algIndex(alg jwa.SignatureAlgorithm) int {
	switch alg {
	case jwa.RS256:
		return 0
	case jwa.RS384:
		return 1
	case jwa.RS512:
		return 2
	case jwa.PS256:
		return 3
	case jwa.PS384:
		return 4
	case jwa.PS512:
		return 5
	case jwa.ES256:
		return 6
	case jwa.ES384:
		return 7
	case jwa.ES512:
		return 8
	case jwa.EdDSA:
		return 9
	}
	return -1
}

// newVerifyKey converts a public JWK that passed keyUsable.
func newVerifyKey(key jwk.Key) (*verifyKey, error) {
	pub, err := rawPublicKey(key)
	if err != nil {
		return nil, err
	}
	vk := &verifyKey{jwk: key, pub: pub, declared: declaredAlg(key)}
	for _, alg := range supportedAlgs {
		if keyFits(key, alg) {
			vk.fitBits |= 1 << algIndex(alg)
		}
	}
	return vk, nil
}

// fits is keyFits(vk.jwk, alg), answered at load time.
func (vk *verifyKey) fits(alg jwa.SignatureAlgorithm) bool {
	i := algIndex(alg)
	return i >= 0 && vk.fitBits&(1<<i) != 0
}

// rawPublicKey is the standard-library public key of a JWK: *rsa.PublicKey,
// *ecdsa.PublicKey or ed25519.PublicKey.
func rawPublicKey(key jwk.Key) (any, error) {
	var raw any
	if err := key.Raw(&raw); err != nil {
		return nil, fmt.Errorf("converting the key: %w", err)
	}
	switch k := raw.(type) {
	case *rsa.PublicKey:
		return k, nil
	case rsa.PublicKey:
		return &k, nil
	case *ecdsa.PublicKey:
		return k, nil
	case ecdsa.PublicKey:
		return &k, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("Ed25519 public key of the wrong size")
		}
		return k, nil
	}
	return nil, fmt.Errorf("key type %T cannot verify an accepted algorithm", raw)
}

var (
	errBadSignature      = errors.New("signature does not verify")
	errSignatureLength   = errors.New("signature length does not fit the curve (RFC 7518 §3.4: R and S, each the curve's size, concatenated)")
	errKeyAlgMismatch    = errors.New("the key's type does not fit the algorithm")
	errUnsupportedAlgSig = errors.New("algorithm not supported for signatures")
)

// verifySignature checks sig over input (the token up to its second dot)
// with pub under alg, with the standard library only. keyFits has already
// matched the key type (and curve) to alg; the type assertions below refuse
// a mismatch all the same.
func verifySignature(alg jwa.SignatureAlgorithm, pub any, input, sig []byte) error {
	switch alg {
	case jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return errKeyAlgMismatch
		}
		return verifyRSA(alg, k, input, sig)
	case jwa.ES256, jwa.ES384, jwa.ES512:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != curveOf(alg) {
			return errKeyAlgMismatch
		}
		return verifyECDSA(alg, k, input, sig)
	case jwa.EdDSA:
		k, ok := pub.(ed25519.PublicKey)
		if !ok {
			return errKeyAlgMismatch
		}
		if !ed25519.Verify(k, input, sig) {
			return errBadSignature
		}
		return nil
	}
	return errUnsupportedAlgSig
}

// verifyRSA checks an RS* (RSASSA-PKCS1-v1_5) or PS* (RSASSA-PSS)
// signature (RFC 7518 §3.3, §3.5).
func verifyRSA(alg jwa.SignatureAlgorithm, k *rsa.PublicKey, input, sig []byte) error {
	var buf [sha512.Size]byte
	h, digest := hashInput(alg, input, &buf)
	var err error
	switch alg {
	case jwa.PS256, jwa.PS384, jwa.PS512:
		// RFC 7518 §3.5 requires the salt to be as long as the hash
		// output. jwx v2.1.7 verified with nil options, that is
		// rsa.PSSSaltLengthAuto (any salt length the encoding shows), and
		// so do we: a token that verified before still does.
		err = rsa.VerifyPSS(k, h, digest, sig, nil)
	default:
		err = rsa.VerifyPKCS1v15(k, h, digest, sig)
	}
	if err != nil {
		return errBadSignature
	}
	return nil
}

// verifyECDSA checks an ES* signature: R and S, each exactly the curve's
// size, big-endian, concatenated (RFC 7518 §3.4). A DER (ASN.1) signature
// or any other length is refused.
func verifyECDSA(alg jwa.SignatureAlgorithm, k *ecdsa.PublicKey, input, sig []byte) error {
	size := (k.Curve.Params().BitSize + 7) / 8
	if len(sig) != 2*size {
		return errSignatureLength
	}
	var buf [sha512.Size]byte
	_, digest := hashInput(alg, input, &buf)
	if !jwssig.VerifyECDSA(k, digest, sig) {
		return errBadSignature
	}
	return nil
}

// hashInput hashes input with alg's hash into buf (on the caller's stack).
func hashInput(alg jwa.SignatureAlgorithm, input []byte, buf *[sha512.Size]byte) (crypto.Hash, []byte) {
	switch alg {
	case jwa.RS384, jwa.PS384, jwa.ES384:
		*(*[sha512.Size384]byte)(buf[:sha512.Size384]) = sha512.Sum384(input)
		return crypto.SHA384, buf[:sha512.Size384]
	case jwa.RS512, jwa.PS512, jwa.ES512:
		*buf = sha512.Sum512(input)
		return crypto.SHA512, buf[:]
	}
	*(*[sha256.Size]byte)(buf[:sha256.Size]) = sha256.Sum256(input)
	return crypto.SHA256, buf[:sha256.Size]
}

// curveOf is the curve of an ECDSA algorithm (RFC 7518 §3.4).
func curveOf(alg jwa.SignatureAlgorithm) elliptic.Curve {
	switch alg {
	case jwa.ES256:
		return elliptic.P256()
	case jwa.ES384:
		return elliptic.P384()
	case jwa.ES512:
		return elliptic.P521()
	}
	return nil
}
