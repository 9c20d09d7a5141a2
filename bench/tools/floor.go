package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/tokengate/tokengate/internal/benchjwt"
)

type floorOptions struct {
	in, jwks  string
	n, repeat int
}

// floorResult is the stdlib verify of one algorithm: median CPU and wall
// time per token over the repeats.
type floorResult struct {
	alg         string
	tokens      int
	cpuUs, wall float64
}

// floor times the standard library's signature check (benchjwt.Verify: the
// SHA-256 of the signing input and rsa/ecdsa/ed25519 verify with an
// already-parsed key) of the first o.n tokens of o.in, o.repeat times over,
// in this goroutine: the floor under bearer_auth's cold path, for the same
// keys and tokens. Run it with GOMAXPROCS=1 on the gateway's CPU.
func floor(o floorOptions) (floorResult, error) {
	toks, err := readLines(o.in, o.n)
	if err != nil {
		return floorResult{}, err
	}
	if len(toks) == 0 {
		return floorResult{}, fmt.Errorf("%s: no tokens", o.in)
	}
	alg, pub, err := tokenKey(toks[0], o.jwks)
	if err != nil {
		return floorResult{}, err
	}
	signed, err := benchjwt.SplitAll(toks)
	if err != nil {
		return floorResult{}, err
	}
	var cpus, walls []float64
	for range max(o.repeat, 1) {
		c0, t0 := processCPU(), time.Now()
		for i, s := range signed {
			if !benchjwt.Verify(pub, s) {
				return floorResult{}, fmt.Errorf("token %d does not verify with %s", i, o.jwks)
			}
		}
		wall, cpu := time.Since(t0), processCPU()-c0
		cpus = append(cpus, float64(cpu.Microseconds())/float64(len(signed)))
		walls = append(walls, float64(wall.Microseconds())/float64(len(signed)))
	}
	return floorResult{alg: alg, tokens: len(signed), cpuUs: median(cpus), wall: median(walls)}, nil
}

func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tokenKey is the alg of tok's header and the raw public key of the JWKS
// member with its kid.
func tokenKey(tok, jwksFile string) (string, any, error) {
	hdr, err := base64.RawURLEncoding.DecodeString(tok[:max(strings.IndexByte(tok, '.'), 0)])
	if err != nil {
		return "", nil, fmt.Errorf("token header: %w", err)
	}
	var h struct{ Alg, Kid string }
	if err := json.Unmarshal(hdr, &h); err != nil {
		return "", nil, fmt.Errorf("token header: %w", err)
	}
	b, err := os.ReadFile(jwksFile)
	if err != nil {
		return "", nil, err
	}
	set, err := jwk.Parse(b)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", jwksFile, err)
	}
	key, ok := set.LookupKeyID(h.Kid)
	if !ok {
		return "", nil, fmt.Errorf("%s has no key %q", jwksFile, h.Kid)
	}
	var raw any
	if err := key.Raw(&raw); err != nil {
		return "", nil, err
	}
	return h.Alg, raw, nil
}

// readLines returns the first n non-empty lines of path (all if n <= 0).
func readLines(path string, n int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() && (n <= 0 || len(out) < n) {
		if s.Text() != "" {
			out = append(out, s.Text())
		}
	}
	return out, s.Err()
}
