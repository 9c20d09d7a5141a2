// Command caddy is Caddy with the standard modules and tokengate, built
// from this working tree by bench/run.sh when BUILD=1 (plain `go build`,
// the Caddy version go.mod pins; ./xcaddy.sh remains the way to build the
// Caddy you ship).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/tokengate/tokengate"
)

func main() { caddycmd.Main() }
