package jwt

import (
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Which key may verify which signature. The rules are applied when a key set
// is loaded and again for the key a token selects, so a third-party KeySet
// cannot weaken them.

// supportedAlgs is the universe of algorithms a JWT access token may be
// signed with here: asymmetric only (RFC 8725 §3.1/§3.2). "none" and HS*
// are not in it and cannot be configured: a resource server that shares a
// MAC key with the AS could mint tokens itself, and HS* with a public key
// as the secret is the classic algorithm-confusion attack.
var supportedAlgs = []jwa.SignatureAlgorithm{
	jwa.RS256, jwa.RS384, jwa.RS512,
	jwa.PS256, jwa.PS384, jwa.PS512,
	jwa.ES256, jwa.ES384, jwa.ES512,
	jwa.EdDSA,
}

func isSupportedAlg(alg jwa.SignatureAlgorithm) bool {
	return slices.Contains(supportedAlgs, alg)
}

// MinRSABits is the minimum RSA modulus for RS*/PS* (RFC 7518 §3.3,
// §3.5: "A key of size 2048 bits or larger MUST be used"), for the keys
// that verify tokens and the key the gateway signs its assertions with.
const MinRSABits = 2048

// RSABits is the size of an RSA key's modulus.
func RSABits(k interface{ N() []byte }) int {
	return new(big.Int).SetBytes(k.N()).BitLen()
}

// keyUsable reports why key must never verify a signature, or nil.
// It is applied when a set is loaded and again by the verifier.
func keyUsable(key jwk.Key) error {
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
		if !isSupportedAlg(jwa.SignatureAlgorithm(a)) {
			return fmt.Errorf("key alg %q is not an accepted signature algorithm", a)
		}
		if !keyFits(key, jwa.SignatureAlgorithm(a)) {
			return fmt.Errorf("key alg %q does not match its key type %q", a, key.KeyType())
		}
	}
	switch k := key.(type) {
	case jwk.RSAPublicKey:
		if bits := RSABits(k); bits < MinRSABits {
			return fmt.Errorf("RSA key is %d bits, below the %d required by RFC 7518 §3.3", bits, MinRSABits)
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

// keyFits reports whether key may verify a signature made with alg: the
// key type (and curve) must be the one the algorithm family is defined for,
// and the key's own "alg", if set, must be exactly alg (RFC 8725 §3.1,
// RFC 7517 §4.4). This is what stops HS256-with-the-RSA-public-key and
// ES256-with-an-RSA-key confusions.
func keyFits(key jwk.Key, alg jwa.SignatureAlgorithm) bool {
	if a := key.Algorithm().String(); a != "" && a != string(alg) {
		return false
	}
	switch alg {
	case jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512:
		_, ok := key.(jwk.RSAPublicKey)
		return ok
	case jwa.ES256, jwa.ES384, jwa.ES512:
		k, ok := key.(jwk.ECDSAPublicKey)
		return ok && k.Crv() == curveFor[alg]
	case jwa.EdDSA:
		k, ok := key.(jwk.OKPPublicKey)
		return ok && k.Crv() == jwa.Ed25519
	}
	return false
}

// curveFor pins each ECDSA algorithm to its curve (RFC 7518 §3.4).
var curveFor = map[jwa.SignatureAlgorithm]jwa.EllipticCurveAlgorithm{
	jwa.ES256: jwa.P256, jwa.ES384: jwa.P384, jwa.ES512: jwa.P521,
}

// AlgForCurve is the ECDSA algorithm of an EC curve (RFC 7518 §3.4), or ""
// for a curve no accepted algorithm uses.
func AlgForCurve(crv jwa.EllipticCurveAlgorithm) jwa.SignatureAlgorithm {
	for alg, c := range curveFor {
		if c == crv {
			return alg
		}
	}
	return ""
}

// declaredAlg is the algorithm a key is for: its "alg", or for a key
// without one the algorithm its type implies (RS256 is the RFC 9068 §2.1 /
// OpenID default for RSA; an EC curve names its ES* algorithm).
func declaredAlg(key jwk.Key) jwa.SignatureAlgorithm {
	if a := key.Algorithm().String(); a != "" {
		return jwa.SignatureAlgorithm(a)
	}
	switch k := key.(type) {
	case jwk.RSAPublicKey:
		return jwa.RS256
	case jwk.ECDSAPublicKey:
		return AlgForCurve(k.Crv())
	case jwk.OKPPublicKey:
		return jwa.EdDSA
	}
	return ""
}
