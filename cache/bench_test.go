package cache

import (
	"context"
	"encoding/binary"
	"runtime"
	"testing"
	"time"
)

func BenchmarkGetHit(b *testing.B) {
	ctx := context.Background()
	c := newMem(b, Config{})
	k := plain.Key("hot-token")
	c.Set(ctx, k, &verdict{Active: true}, time.Hour)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := c.Get(ctx, k); !ok {
				b.Fatal("miss")
			}
		}
	})
}

func BenchmarkKey(b *testing.B) {
	// A typical JWT access token is several hundred bytes.
	tok := string(make([]byte, 800))
	for _, bc := range []struct {
		name string
		k    Keyer
	}{{"sha256", plain}, {"hmac", NewKeyer([]byte("secret"))}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tok)))
			for b.Loop() {
				_ = bc.k.Key(tok)
			}
		})
	}
}

// BenchmarkMillionEntries reports the memory tier's footprint per entry,
// including the cached *verdict itself, at a million entries.
func BenchmarkMillionEntries(b *testing.B) {
	if testing.Short() {
		b.Skip("allocates a million entries")
	}
	const n = 1_000_000
	ctx := context.Background()
	var perEntry, perSet float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c, err := New(Config{MaxEntries: n}, JSONCodec[*verdict]{})
		if err != nil {
			b.Fatal(err)
		}
		var k Key
		start := time.Now()
		for i := range n {
			binary.LittleEndian.PutUint64(k[:], uint64(i))
			c.Set(ctx, k, &verdict{Active: true, Exp: int64(i)}, time.Hour)
		}
		c.mem.CleanUp()
		perSet = float64(time.Since(start).Nanoseconds()) / n
		runtime.GC()
		runtime.ReadMemStats(&after)
		if c.Len() < n*9/10 {
			b.Fatalf("only %d of %d entries retained", c.Len(), n)
		}
		perEntry = float64(after.HeapAlloc-before.HeapAlloc) / float64(c.Len())
		runtime.KeepAlive(c)
		_ = c.Close()
	}
	b.ReportMetric(perEntry, "bytes/entry")
	b.ReportMetric(perSet, "ns/set")
}
