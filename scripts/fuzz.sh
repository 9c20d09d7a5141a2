#!/usr/bin/env bash
# Runs every fuzz target briefly (default 10s each): go test -fuzz takes one
# target per run. Minimizing is bounded: shrinking large key inputs could
# otherwise take a minute per new input.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz: $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$pkg" >/tmp/fuzz-$target.log 2>&1 || {
      cat /tmp/fuzz-$target.log >&2; exit 1; }
    tail -n 1 /tmp/fuzz-$target.log
  done
done
