package jwssig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strconv"
	"testing"
)

// TestDERSignature: R || S of every curve, as ecdsa.Sign makes them
// (high bits set or not, short values), verify through derSignature, and
// a changed signature does not.
func TestDERSignature(t *testing.T) {
	for _, c := range []struct {
		curve elliptic.Curve
		alg   string
		hash  crypto.Hash
	}{{elliptic.P256(), "ES256", crypto.SHA256}, {elliptic.P384(), "ES384", crypto.SHA384}, {elliptic.P521(), "ES512", crypto.SHA512}} {
		k, _ := ecdsa.GenerateKey(c.curve, rand.Reader)
		size := (c.curve.Params().BitSize + 7) / 8
		for i := range 64 {
			h := c.hash.New()
			h.Write([]byte("proof " + strconv.Itoa(i)))
			digest := h.Sum(nil)
			r, s, err := ecdsa.Sign(rand.Reader, k, digest)
			if err != nil {
				t.Fatal(err)
			}
			sig := make([]byte, 2*size)
			r.FillBytes(sig[:size])
			s.FillBytes(sig[size:])
			if !VerifyECDSA(&k.PublicKey, digest, sig) {
				t.Fatalf("%s: a good signature is refused (r %x, s %x)", c.alg, r, s)
			}
			if VerifyECDSA(&k.PublicKey, digest, sig[:len(sig)-1]) || VerifyECDSA(&k.PublicKey, digest, append(sig, 0)) {
				t.Fatalf("%s: a signature of the wrong length verifies", c.alg)
			}
			sig[len(sig)-1] ^= 1
			if VerifyECDSA(&k.PublicKey, digest, sig) {
				t.Fatalf("%s: a changed signature verifies", c.alg)
			}
			if VerifyECDSA(&k.PublicKey, digest, make([]byte, 2*size)) {
				t.Fatalf("%s: r = s = 0 verifies", c.alg)
			}
		}
	}
	// Short values: leading zero bytes are dropped, a high bit gets one.
	if got := derSignature(nil, []byte{0, 0, 0x80}, []byte{0, 0x01}); string(got) != "\x30\x07\x02\x02\x00\x80\x02\x01\x01" {
		t.Errorf("got % x", got)
	}
}
