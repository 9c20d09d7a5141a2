#!/usr/bin/env bash
# Builds ./caddy with tokengate from this working tree, using the xcaddy
# version pinned as a Go tool in go.mod, then checks that the module is in.
set -euo pipefail
cd "$(dirname "$0")"
CADDY_VERSION=${CADDY_VERSION:-v2.11.9}
# Our module is replaced by this directory, but "go get" still asks the module
# proxy for its versions first, and falls back to the replacement only on a
# not-found answer. A proxy that answers 403 instead would stop the build, so
# chain "off" (whose answer counts as not-found) behind the configured proxies
# with "|", which falls through on any error ("," only on not-found).
proxies=$(go env GOPROXY | tr ',' '|' | sed -e 's/|direct//g' -e 's/|off//g')
export GOPROXY="${proxies}|off"
echo "xcaddy.sh: building ./caddy (Caddy $CADDY_VERSION with tokengate from this tree) with go tool xcaddy;" \
  "the first build compiles Caddy: about 5 minutes on a busy 2-core machine"
# xcaddy ends by running "./caddy version".
go tool xcaddy build "$CADDY_VERSION" --output ./caddy --with github.com/tokengate/tokengate=./
./caddy list-modules | grep -qx 'http.handlers.bearer_auth' || { echo "xcaddy.sh: bearer_auth is missing from ./caddy" >&2; exit 1; }
echo "xcaddy.sh: ./caddy is ready, with http.handlers.bearer_auth"
