#!/usr/bin/env bash
# Runs every fuzz target for a while: bash scripts/fuzz.sh [fuzztime, default 10s].
#
# "go test -fuzz" takes one target per run and links a test binary for each.
# Instead, each package's test binary is built once, with the coverage
# instrumentation "go test -fuzz" adds (go test -c -fuzz=.), and then run
# once per target the way go test runs it: in the package directory (for
# testdata/fuzz), with the fuzz cache go test uses (so what is found here
# is kept for both), and with minimizing bounded (shrinking large key
# inputs could otherwise take a minute per new input). Logs go to a
# temporary directory that is removed unless a target fails.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
cache=$(go env GOCACHE)/fuzz
work=$(mktemp -d "${TMPDIR:-/tmp}/tokengate-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "fuzz: finding fuzz targets"
found=0
while read -r pkg dir; do
  targets=$( (grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go || true) | sed 's/^func //' | sort -u)
  [ -n "$targets" ] || continue
  bin=$work/$(echo "$pkg" | tr / _).test
  echo "fuzz: building $pkg's test binary with fuzzing instrumentation (the first build compiles every dependency again, instrumented: minutes on 2 cores)"
  go test -c -fuzz=. -o "$bin" "$pkg"
  for target in $targets; do
    found=$((found + 1))
    echo "fuzz: $pkg $target ($fuzztime)"
    log=$work/$target.log
    run() { (cd "$dir" && "$bin" -test.run='^$' -test.fuzz="^$target\$" -test.fuzztime="$fuzztime" \
      -test.fuzzminimizetime=2s -test.fuzzcachedir="$cache/$pkg" -test.paniconexit0 -test.timeout=10m) >"$log" 2>&1; }
    ok=true
    run || ok=false
    # Go's fuzzing coordinator can report "context deadline exceeded" when
    # fuzztime ends while a worker is mid-call, writing no failing input:
    # that is the engine, not a finding. Run the target once more; a real
    # finding (a "Failing input written" line) is never retried.
    if ! $ok && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
      echo "fuzz: $target: the fuzzing engine stopped with 'context deadline exceeded' and no failing input; running it again"
      ok=true
      run || ok=false
    fi
    if ! $ok; then
      cat "$log" >&2
      kept=$(mktemp -d "${TMPDIR:-/tmp}/tokengate-fuzz-failed.XXXXXX")
      cp "$work"/*.log "$kept"/
      echo "fuzz: $target failed; the failing input is under $dir/testdata/fuzz/$target, the logs in $kept" >&2
      exit 1
    fi
    # The coordinator's last progress line: execs, and new corpus entries.
    grep '^fuzz: elapsed' "$log" | tail -n 1
  done
done < <(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}' ./...)
[ "$found" -gt 0 ] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }
echo "fuzz: $found targets, $fuzztime each: no failures"
