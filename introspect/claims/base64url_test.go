package claims

import (
	"bytes"
	"testing"
)

func TestAppendSegmentIsDecodeSegment(t *testing.T) {
	for _, seg := range []string{
		"", "e30", "eyJhIjoxfQ", "YQ", "YR", "YQ==", "Y Q", "YQ\n", "Y\rQ", "a+b/", "a-b_", "A", "AB", "ABC", "ABCD",
	} {
		want, wantErr := DecodeSegment(seg)
		prefix := []byte("keep")
		got, err := AppendSegment(prefix, seg)
		if (err == nil) != (wantErr == nil) {
			t.Errorf("%q: AppendSegment error %v, DecodeSegment %v", seg, err, wantErr)
			continue
		}
		if err == nil && (!bytes.HasPrefix(got, []byte("keep")) || !bytes.Equal(got[4:], want)) {
			t.Errorf("%q: AppendSegment %q, DecodeSegment %q", seg, got, want)
		}
	}
}

// The decoder is trusted to refuse every byte outside the alphabet but the
// two it skips, which DecodeSegment refuses itself: the one segment
// decoder accepts exactly what IsBase64URL accepts.
func TestDecodeSegmentRefusesEveryByteOutsideTheAlphabet(t *testing.T) {
	for c := range 256 {
		for _, seg := range []string{"QUJD" + string(rune(c)), "QU" + string([]byte{byte(c)}) + "JD", string([]byte{byte(c)}) + "QUJD"} {
			seg := seg
			_, err := DecodeSegment(seg)
			_, aerr := AppendSegment(nil, seg)
			if (err == nil) != (aerr == nil) {
				t.Fatalf("%q: DecodeSegment %v, AppendSegment %v", seg, err, aerr)
			}
			if err == nil && !IsBase64URL(seg) {
				t.Fatalf("%q (byte %#x) decoded although it is not base64url", seg, c)
			}
		}
	}
}
