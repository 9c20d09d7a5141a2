package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math/big"

	"github.com/tokengate/tokengate/introspect/claims"
)

// publicJWK is the jwk header of a proof (RFC 9449 §4.2: "the public key
// chosen by the client, in JSON Web Key (JWK) format").
type publicJWK struct {
	Kty, Crv, X, Y, N, E string
}

// privateMembers would make a jwk a private (or symmetric) key: RFC 7518
// §6.2.2, §6.3.2 and §6.4, RFC 8037 §2. RFC 9449 §4.3 check 7: the jwk
// "does not contain a private key" — a client that sends its private key
// with every request has nothing left to prove.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// readJWK reads the jwk header member; every member it uses must be a
// string.
func readJWK(v any) (*publicJWK, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errKey
	}
	for _, p := range privateMembers {
		if _, ok := m[p]; ok {
			return nil, errPrivateKey
		}
	}
	str := func(name string) (string, bool) {
		v, ok := m[name]
		if !ok {
			return "", true
		}
		s, ok := v.(string)
		return s, ok
	}
	var k publicJWK
	var ok1, ok2, ok3, ok4, ok5, ok6 bool
	k.Kty, ok1 = str("kty")
	k.Crv, ok2 = str("crv")
	k.X, ok3 = str("x")
	k.Y, ok4 = str("y")
	k.N, ok5 = str("n")
	k.E, ok6 = str("e")
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
		return nil, errKey
	}
	return &k, nil
}

var errPrivateKey = errors.New("the jwk holds a private key")

var errKey = errors.New("unusable jwk")

// b64 is claims.DecodeSegment: one spelling per value, as for tokens.
func b64(s string) ([]byte, error) { return claims.DecodeSegment(s) }

// key returns the public key, and checks that it suits alg (RFC 9449 §4.3
// check 6: the signature must verify with the jwk, under the header's alg).
func (k *publicJWK) key(a *algorithm) (crypto.PublicKey, error) {
	switch k.Kty {
	case "EC":
		if a.family != familyEC || k.Crv != a.crv {
			return nil, errKey
		}
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, errKey
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, errKey
		}
		// Uncompressed SEC 1 point: ecdsa.ParseUncompressedPublicKey checks
		// that it is on the curve (an invalid-curve point is refused).
		pt := make([]byte, 0, 1+2*size)
		pt = append(append(append(pt, 4), x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, pt)
		if err != nil {
			return nil, errKey
		}
		return pub, nil
	case "RSA":
		if a.family != familyRSA && a.family != familyPSS {
			return nil, errKey
		}
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 || len(n) < 2048/8 || len(n) > 8192/8 {
			// RSA keys under 2048 bits are not accepted (RFC 7518 §3.3
			// "A key of size 2048 bits or larger MUST be used").
			return nil, errKey
		}
		var ev int
		for _, b := range e {
			ev = ev<<8 | int(b)
		}
		if ev < 3 || ev%2 == 0 {
			return nil, errKey
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: ev}, nil
	case "OKP":
		if a.family != familyEdDSA || k.Crv != "Ed25519" {
			return nil, errKey
		}
		x, err := b64(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errKey
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, errKey
}

// thumbprint is the RFC 7638 JWK SHA-256 thumbprint, base64url: the value
// of cnf.jkt (RFC 9449 §6.1). The required members, in lexicographic order,
// with the values exactly as the client sent them (already checked to be
// base64url by key).
func (k *publicJWK) thumbprint() string {
	var b []byte
	switch k.Kty {
	case "EC":
		b = jsonObject(b, "crv", k.Crv, "kty", k.Kty, "x", k.X, "y", k.Y)
	case "RSA":
		b = jsonObject(b, "e", k.E, "kty", k.Kty, "n", k.N)
	case "OKP":
		b = jsonObject(b, "crv", k.Crv, "kty", k.Kty, "x", k.X)
	}
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// jsonObject writes {"k":"v",...}. The values are base64url or fixed names,
// so no escaping is needed (RFC 7638 §3: no whitespace).
func jsonObject(b []byte, kv ...string) []byte {
	b = append(b, '{')
	for i := 0; i < len(kv); i += 2 {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, kv[i]...)
		b = append(b, `":"`...)
		b = append(b, kv[i+1]...)
		b = append(b, '"')
	}
	return append(b, '}')
}
