package upstreamtoken

import (
	"testing"
	"time"
)

// BenchmarkMint is the cost of one signature, paid once per decision and
// half-TTL (For), per key type.
//
//	go test -run '^$' -bench . -benchmem ./introspect/upstreamtoken/
func BenchmarkMint(b *testing.B) {
	for _, k := range writeKeys(b)[:3] {
		b.Run(k.alg, func(b *testing.B) {
			m := newMinter(b, Options{SigningKeyFile: k.file})
			d := decision(time.Now().Add(time.Hour), map[string]any{"acr": "phr"})
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Mint(d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkForReused is what every other request pays: finding the
// decision's token (a clock read and an atomic load); no allocation.
func BenchmarkForReused(b *testing.B) {
	m := newMinter(b, Options{SigningKeyFile: writeKeys(b)[0].file})
	d := decision(time.Now().Add(time.Hour), nil)
	var reuse Reuse
	first, err := m.For(d, &reuse)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if t, _ := m.For(d, &reuse); t != first {
			b.Fatal("re-signed within the token's life")
		}
	}
}
