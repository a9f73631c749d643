#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 3s, as in
# CI; `make fuzz` gives each a minute). Targets are found by grep, so a new
# one is fuzzed without being listed here. A failing input is minimised for
# at most FUZZMINIMIZETIME and left in the package's testdata/fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-3s}
minimizetime=${FUZZMINIMIZETIME:-10s}

targets=$(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' . | sed -E 's|^(.*)/[^/]+_test\.go:func |\1 |' | sort -u)
if [ -z "$targets" ]; then
	echo "no fuzz targets found" >&2
	exit 1
fi
while read -r dir name; do
	echo "fuzz $dir $name for $fuzztime"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimizetime" "$dir" </dev/null
done <<<"$targets"
