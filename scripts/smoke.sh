#!/usr/bin/env bash
# The README's quick start, checked: builds nothing, expects ./caddy (from
# ./xcaddy.sh), runs it on Caddyfile.example and checks the three curls.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x ./caddy ] || { echo "smoke: ./caddy is missing; run ./xcaddy.sh first" >&2; exit 1; }

# The example listens on 8080 and its admin API on 2019: another server
# there would answer instead.
for port in 8080 2019; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "smoke: something already listens on port $port; Caddyfile.example needs 8080 and 2019 free" >&2
    exit 1
  fi
done

log=$(mktemp)
./caddy run --config Caddyfile.example >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
started=0
for _ in $(seq 1 100); do
  kill -0 $pid 2>/dev/null || break
  if curl -s -o /dev/null localhost:8080/; then started=1; break; fi
  sleep 0.1
done
if [ $started = 0 ]; then
  echo "smoke: ./caddy did not start serving Caddyfile.example:" >&2
  cat "$log" >&2
  exit 1
fi

fail=0
check() { # name, want-status, want-body-substring, curl args...
  local name=$1 want=$2 body=$3; shift 3
  local out status
  out=$(curl -s -w '\n%{http_code}' "$@")
  status=${out##*$'\n'}
  if [ "$status" != "$want" ] || [[ "${out%$'\n'*}" != *"$body"* ]]; then
    echo "smoke: $name: got $status ${out%$'\n'*}, want $want with \"$body\"" >&2
    fail=1
  else
    echo "smoke: $name: $status ok"
  fi
}

check "no token" 401 '"bearer token required"' localhost:8080/
TOKEN=$(./caddy bearer-auth token --key demo/demo-private.jwk \
  --issuer https://demo.tokengate.test --audience demo-api --scope read)
check "good token" 200 'hello demo-user, your scopes: read, X-User: demo-user' -H "Authorization: Bearer $TOKEN" localhost:8080/
TOKEN=$(./caddy bearer-auth token --key demo/demo-private.jwk \
  --issuer https://demo.tokengate.test --audience demo-api --scope write)
check "missing scope" 403 '"error":"insufficient_scope"' -H "Authorization: Bearer $TOKEN" localhost:8080/
if [ $fail -ne 0 ]; then
  echo "--- caddy log ---" >&2; cat "$log" >&2
  exit 1
fi
