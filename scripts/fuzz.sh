#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded time each: go test allows one
# -fuzz target per package per invocation, so each target gets its own. The targets
# are found, not listed: a new func FuzzX in a _test.go file is run without editing
# this script. Their seed corpora (f.Add and testdata/fuzz/FuzzX/) also run in every
# plain go test. A failing input is written to testdata/fuzz/FuzzX/ for go test to
# replay; check it in with the fix.
#
# Usage: bash scripts/fuzz.sh [FUZZTIME]   (default 10s, as scripts/test.sh runs it;
#        make fuzz gives 30s)
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${1:-10s}

# "import/path FuzzName" for every fuzz target, sorted.
targets() {
	# shellcheck disable=SC2016 # $dir and $p belong to the Go template
	go list -f '{{$dir := .Dir}}{{$p := .ImportPath}}{{range .TestGoFiles}}{{$p}} {{$dir}}/{{.}}{{"\n"}}{{end}}{{range .XTestGoFiles}}{{$p}} {{$dir}}/{{.}}{{"\n"}}{{end}}' ./... |
		while read -r pkg file; do
			[ -n "$pkg" ] || continue
			sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$file" | sed "s|^|$pkg |"
		done | sort
}

mapfile -t list < <(targets)
if [ "${#list[@]}" -eq 0 ]; then
	echo "scripts/fuzz.sh: no fuzz targets found" >&2
	exit 1
fi
echo "fuzz: ${#list[@]} targets, $fuzztime each"
for t in "${list[@]}"; do
	read -r pkg name <<<"$t"
	echo "-- $name ($pkg)"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
done
