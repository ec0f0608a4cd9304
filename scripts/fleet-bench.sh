#!/usr/bin/env bash
# Scaling of a fleet behind nginx, as a user runs it: release builds of calcserver and
# gameday, then `gameday scale`, which starts N calcservers (no cache, WorkMode sleep)
# behind Debian's nginx with deploy/nginx.conf (least_conn) for each N in INSTANCES,
# offers each fleet 1.25 times its capacity (N x CORES / WORKTIME) of never-repeated
# keys over loopback, and gives correct answers per second as a ratio to that
# capacity (median of ROUNDS rounds); then, on the largest fleet sharing one Redis,
# asks every instance for keys computed on another.
#
# The table replaces the part of the file BENCHMARKS (BENCHMARKS.md) between the
# "fleet-bench" markers (WRITE=0: print it only). Usage: make fleet-bench, or bash
# scripts/fleet-bench.sh (INSTANCES=1,2,4,8 CORES=2 WORKTIME=100ms DURATION=10s ROUNDS=3
# WRITE=1 BENCHMARKS=BENCHMARKS.md by default).
# Exits 1 when a fleet size is further than 10 % from linear, an answer is wrong or a
# shared-cache ask was not a hit (gameday scale's exit status).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

INSTANCES=${INSTANCES:-1,2,4,8}
CORES=${CORES:-2}
WORKTIME=${WORKTIME:-100ms}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WRITE=${WRITE:-1}
BENCHMARKS=${BENCHMARKS:-BENCHMARKS.md}

work_dir
build_release cmd/calcserver cmd/gameday
load=$(cut -d' ' -f1-3 /proc/loadavg)
status=0
"$dir/gameday" scale -calcserver "$dir/calcserver" -instances "$INSTANCES" -cores "$CORES" \
	-work-time "$WORKTIME" -duration "$DURATION" -rounds "$ROUNDS" >"$dir/table.md" || status=$?
cat "$dir/table.md"
if [ ! -s "$dir/table.md" ]; then
	echo "fleet-bench: gameday scale gave no table (exit $status)" >&2
	exit 1
fi

if [ "$WRITE" = 1 ]; then
	begin='<!-- fleet-bench begin -->'
	end='<!-- fleet-bench end -->'
	if ! grep -qxF "$begin" "$BENCHMARKS" || ! grep -qxF "$end" "$BENCHMARKS"; then
		echo "fleet-bench: $BENCHMARKS has no '$begin' ... '$end' lines to write between" >&2
		exit 1
	fi
	{
		echo "$begin"
		echo
		echo "\`INSTANCES=$INSTANCES CORES=$CORES WORKTIME=$WORKTIME DURATION=$DURATION ROUNDS=$ROUNDS make fleet-bench\`," \
			"$(date -u +%Y-%m-%d), $(nproc) CPUs, load average $load before the run, nginx $(nginx -v 2>&1 | sed 's|.*/||')," \
			"exit status $status:"
		echo
		cat "$dir/table.md"
		echo
		echo "$end"
	} >"$dir/section.md"
	awk -v begin="$begin" -v end="$end" -v section="$dir/section.md" '
		$0 == begin { while ((getline line < section) > 0) print line; skip = 1; next }
		$0 == end { skip = 0; next }
		!skip { print }
	' "$BENCHMARKS" >"$dir/benchmarks.md"
	cp "$dir/benchmarks.md" "$BENCHMARKS"
	echo "fleet-bench: table written into $BENCHMARKS" >&2
fi
exit "$status"
