// Command tools holds the helpers bench/run.sh needs: a real authorization
// server (the same in-process one the integration tests use) that serves
// until it is stopped, a fast minter of demo JWTs for the cold path, and
// the floor under the cold path: the standard library's verify of the same
// tokens with the same keys, timed.
//
//	go build -o tools ./bench/tools
//	tools serve-as -dir DIR [-max 10m]
//	tools mint -n N -out FILE [-alg ES256|RS256|EdDSA] [-key demo/demo-private.jwk] [-jwks FILE]
//	tools floor -in TOKENS -jwks FILE [-n 2000] [-repeat 3]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// logger writes to stderr even after slog.SetDefault, which takes over
// the log package's default logger.
var logger = log.New(os.Stderr, "bench/tools: ", 0)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve-as":
		fs := flag.NewFlagSet(cmd, flag.ExitOnError)
		dir := fs.String("dir", "", "directory to write issuer, introspection_url and token into (required)")
		maxRun := fs.Duration("max", 10*time.Minute, "stop after this long at the latest")
		_ = fs.Parse(args)
		if *dir == "" {
			usage()
		}
		// The authorization server logs every route and error through
		// the global slog logger.
		slog.SetDefault(slog.New(slog.DiscardHandler))
		ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer cancel()
		ctx, cancelMax := context.WithTimeout(ctx, *maxRun)
		defer cancelMax()
		as, stop, err := startAS(*dir)
		if err != nil {
			logger.Fatal(err)
		}
		<-ctx.Done()
		logger.Printf("introspection calls served: %d", as.IntrospectionCalls())
		stop()
	case "mint":
		fs := flag.NewFlagSet(cmd, flag.ExitOnError)
		var o mintOptions
		fs.IntVar(&o.n, "n", 0, "number of tokens (required)")
		fs.StringVar(&o.out, "out", "", "file to write the tokens to, one a line (required)")
		fs.StringVar(&o.alg, "alg", "ES256", "ES256 (signed with -key), or RS256 or EdDSA (a new RSA-2048 or Ed25519 key, its public JWKS written to -jwks)")
		fs.StringVar(&o.key, "key", "demo/demo-private.jwk", "the ES256 private JWK")
		fs.StringVar(&o.jwks, "jwks", "", "with -alg RS256 or EdDSA: where to write the public JWKS (required)")
		_ = fs.Parse(args)
		if o.n <= 0 || o.out == "" {
			usage()
		}
		if err := mint(o, time.Now()); err != nil {
			logger.Fatal(err)
		}
	case "floor":
		fs := flag.NewFlagSet(cmd, flag.ExitOnError)
		var o floorOptions
		fs.StringVar(&o.in, "in", "", "tokens, one a line, as mint writes them (required)")
		fs.StringVar(&o.jwks, "jwks", "", "the JWKS with the tokens' key (required)")
		fs.IntVar(&o.n, "n", 2000, "how many of the tokens to verify (0: all)")
		fs.IntVar(&o.repeat, "repeat", 3, "times over them; the median is printed")
		_ = fs.Parse(args)
		if o.in == "" || o.jwks == "" {
			usage()
		}
		r, err := floor(o)
		if err != nil {
			logger.Fatal(err)
		}
		fmt.Printf("FLOOR alg=%s tokens=%d cpu_us=%.2f wall_us=%.2f\n", r.alg, r.tokens, r.cpuUs, r.wall)
	default:
		usage()
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  tools serve-as -dir DIR [-max 10m]
  tools mint -n N -out FILE [-alg ES256|RS256|EdDSA] [-key demo/demo-private.jwk] [-jwks FILE]
  tools floor -in TOKENS -jwks FILE [-n 2000] [-repeat 3]
`)
	os.Exit(2)
}
