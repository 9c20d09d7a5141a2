// Package jwssig checks JWS ECDSA signatures (RFC 7518 §3.4) for the
// verifiers in introspect and its sub-packages — the access-token verifier
// (jwt) and the DPoP proof verifier (dpop) — so an ES* signature means one
// thing to both.
package jwssig

import "crypto/ecdsa"

// VerifyECDSA reports whether sig is a valid JWS ECDSA signature of digest
// by k. RFC 7518 §3.4: sig is R || S, each exactly the size of the curve
// order, big-endian, not ASN.1; any other length is refused. It builds the
// DER form ecdsa.VerifyASN1 reads on the stack: what ecdsa.Verify does with
// two big.Ints, without allocating them (or the encoder's buffers) on every
// signature.
func VerifyECDSA(k *ecdsa.PublicKey, digest, sig []byte) bool {
	size := (k.Curve.Params().BitSize + 7) / 8
	if len(sig) != 2*size {
		return false
	}
	var buf [derMax]byte
	return ecdsa.VerifyASN1(k, digest, derSignature(buf[:0], sig[:size], sig[size:]))
}

// derMax is the longest DER signature derSignature writes: P-521's, two
// INTEGERs of up to 67 bytes (66 and a leading zero) in a SEQUENCE with a
// two-byte length.
const derMax = 3 + 2*(2+67)

// derSignature appends R || S as the ASN.1 SEQUENCE of two INTEGERs that
// ecdsa.VerifyASN1 reads. Zero values encode as 0, which VerifyASN1
// refuses, as Verify does.
func derSignature(b, r, s []byte) []byte {
	r, s = trimZeros(r), trimZeros(s)
	n := 2 + derIntLen(r) + 2 + derIntLen(s)
	b = append(b, 0x30)
	if n >= 0x80 {
		b = append(b, 0x81) // n < 256: one length byte follows
	}
	b = append(b, byte(n))
	return appendDERInt(appendDERInt(b, r), s)
}

func trimZeros(x []byte) []byte {
	for len(x) > 0 && x[0] == 0 {
		x = x[1:]
	}
	return x
}

// derIntLen is the length of the content of a non-negative DER INTEGER
// holding x (no leading zeros): a zero byte keeps the high bit clear, and
// 0 is one zero byte.
func derIntLen(x []byte) int {
	if len(x) == 0 || x[0]&0x80 != 0 {
		return len(x) + 1
	}
	return len(x)
}

func appendDERInt(b, x []byte) []byte {
	b = append(b, 0x02, byte(derIntLen(x)))
	if len(x) == 0 || x[0]&0x80 != 0 {
		b = append(b, 0)
	}
	return append(b, x...)
}
