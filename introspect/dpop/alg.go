package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"

	"github.com/tokengate/tokengate/introspect/internal/jwssig"
)

type family uint8

const (
	familyEC family = iota + 1
	familyRSA
	familyPSS
	familyEdDSA
)

// algorithm is one JWS alg a proof may be signed with. RFC 9449 §4.3 check
// 5: "the alg JOSE Header Parameter indicates a registered asymmetric
// digital signature algorithm ..., is not none, is supported by the
// application, and is acceptable per local policy". Symmetric algorithms
// cannot prove possession of a public key and are not in the table at all.
type algorithm struct {
	name   string
	family family
	hash   crypto.Hash
	crv    string // EC: the curve the key must be on
}

// Algorithms lists every alg a proof may use, in the order advertised.
// EdDSA is RFC 8037's name; Ed25519 is its fully-specified name (RFC 9864),
// which newer clients send.
var Algorithms = []string{"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA", "Ed25519"}

// DefaultAlgorithms is what a Verifier accepts when it is given none: every
// supported algorithm.
var DefaultAlgorithms = Algorithms

var algorithms = map[string]*algorithm{
	"ES256":   {name: "ES256", family: familyEC, hash: crypto.SHA256, crv: "P-256"},
	"ES384":   {name: "ES384", family: familyEC, hash: crypto.SHA384, crv: "P-384"},
	"ES512":   {name: "ES512", family: familyEC, hash: crypto.SHA512, crv: "P-521"},
	"PS256":   {name: "PS256", family: familyPSS, hash: crypto.SHA256},
	"PS384":   {name: "PS384", family: familyPSS, hash: crypto.SHA384},
	"PS512":   {name: "PS512", family: familyPSS, hash: crypto.SHA512},
	"RS256":   {name: "RS256", family: familyRSA, hash: crypto.SHA256},
	"RS384":   {name: "RS384", family: familyRSA, hash: crypto.SHA384},
	"RS512":   {name: "RS512", family: familyRSA, hash: crypto.SHA512},
	"EdDSA":   {name: "EdDSA", family: familyEdDSA},
	"Ed25519": {name: "Ed25519", family: familyEdDSA},
}

// Supported reports whether alg is one this package can verify.
func Supported(alg string) bool { _, ok := algorithms[alg]; return ok }

// verify checks sig over the JWS signing input.
func (a *algorithm) verify(pub crypto.PublicKey, input, sig []byte) bool {
	switch a.family {
	case familyEdDSA:
		k, ok := pub.(ed25519.PublicKey)
		return ok && ed25519.Verify(k, input, sig)
	}
	h := a.hash.New()
	h.Write(input)
	digest := h.Sum(nil)
	switch a.family {
	case familyEC:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		// RFC 7518 §3.4: R || S, each the size of the curve order, not
		// ASN.1.
		return jwssig.VerifyECDSA(k, digest, sig)
	case familyRSA:
		k, ok := pub.(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(k, a.hash, digest, sig) == nil
	case familyPSS:
		k, ok := pub.(*rsa.PublicKey)
		// RFC 7518 §3.5: the salt is as long as the hash.
		return ok && rsa.VerifyPSS(k, a.hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	}
	return false
}
