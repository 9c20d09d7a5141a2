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
