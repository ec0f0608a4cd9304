#!/usr/bin/env bash
# Overload, coalescing and memory of calcserver as a user meets it: release builds of
# calcserver and of the bare net/http baseline (internal/bareserver), each started as its own process (calcserver with a server.ini
# that logs to a file), driven over loopback by internal/serverprobe:
#   overload  bursts of 50 × (Cores+QueueSize) new keys at once, each on its own
#             connection: every 503 and /healthcheck timed, goroutines and heap after;
#             the same burst at the baseline before each round
#   coalesce  1,000 concurrent requests for one new key: one job, 1,000 right answers
#   memory    RSS at idle, with 10,000 idle keep-alive connections (and the baseline's),
#             and the cost of 100,000 entries in the memory tier
# Usage: make bench-server, or bash scripts/bench-server.sh
# (PROBES="overload coalesce memory" by default; ROUNDS=N overrides each probe's
# default rounds; STRICT=1 makes a missed target fail the script).
set -euo pipefail
cd "$(dirname "$0")/.."

PROBES=${PROBES:-overload coalesce memory}
ROUNDS=${ROUNDS:-}
STRICT=${STRICT:-}

dir=$(mktemp -d)
trap 'rm -rf -- "$dir"' EXIT

for cmd in cmd/calcserver internal/bareserver internal/serverprobe; do
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/$(basename "$cmd")" "./$cmd"
done

args=(-calcserver "$dir/calcserver")
[ -z "$ROUNDS" ] || args+=(-rounds "$ROUNDS")
[ -z "$STRICT" ] || args+=(-strict)

echo "Machine: $(nproc) cores, $(uname -sm), $(go version | cut -d' ' -f3); load average $(cut -d' ' -f1-3 /proc/loadavg)"
for probe in $PROBES; do
	echo
	echo "### $probe"
	echo
	case $probe in
	overload | memory) "$dir/serverprobe" "$probe" "${args[@]}" -bare "$dir/bareserver" ;;
	coalesce) "$dir/serverprobe" "$probe" "${args[@]}" ;;
	*)
		echo "bench-server: unknown probe $probe (overload, coalesce, memory)" >&2
		exit 2
		;;
	esac
done
