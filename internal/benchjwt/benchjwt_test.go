package benchjwt

import (
	"encoding/json"
	"testing"
	"time"
)

// TestSignVerify: every algorithm's tokens pass the floor, a changed
// payload does not, and both payloads are JSON of the intended size.
func TestSignVerify(t *testing.T) {
	now := time.Now()
	for _, alg := range Algs {
		k, err := NewKey(alg, "k-"+alg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.JWKS(); err != nil {
			t.Fatal(err)
		}
		toks, err := k.MintN(3, func(i int) []byte { return TenClaims(i, "https://as.example", "api", now) })
		if err != nil {
			t.Fatal(err)
		}
		ss, err := SplitAll(toks)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range ss {
			if !Verify(k.Public(), s) {
				t.Errorf("%s: token %d does not verify", alg, i)
			}
			s.Input[len(s.Input)-2] ^= 1
			if Verify(k.Public(), s) {
				t.Errorf("%s: changed token %d verifies", alg, i)
			}
		}
	}
	for name, b := range map[string][]byte{"ten": TenClaims(7, "https://as.example", "api", now), "nested": NestedClaims(7, "https://as.example", "api", now)} {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %d claims, %d bytes", name, len(m), len(b))
		if name == "nested" && (len(b) < 1900 || len(b) > 2200) {
			t.Errorf("nested claims are %d bytes, want about 2 KB", len(b))
		}
	}
}
