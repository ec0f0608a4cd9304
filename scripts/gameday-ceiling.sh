#!/usr/bin/env bash
# Measures how fast one gameday process goes: the highest arrival rate it sustains with
# no drop and every answer verified, against a cache-hit-only calcserver, next to wrk
# against the same server in the same run. Usage: make gameday-ceiling (or bash this).
#
# Both are release builds (CGO_ENABLED=0, -trimpath, stripped); calcserver logs to a
# file, uses WorkMode sleep and keeps every answer in memory, and gameday asks for 10
# keys only, so after the warm-up every request is a cache hit. Rates are tried in RATES order, each
# for DURATION, REPEAT times interleaved with wrk; the summary gives each rate's runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

RATES=${RATES:-"2000 3000 4000 5000"}
DURATION=${DURATION:-10s}
REPEAT=${REPEAT:-3}
PORT=${PORT:-18090}

command -v wrk >/dev/null || bash scripts/deps.sh wrk
work_dir
build_release cmd/calcserver cmd/gameday
cat >"$dir/server.ini" <<EOF
Port = $PORT
WorkMode = sleep
WorkTime = 10ms
LogLocation = $dir/calcserver.log
EOF
"$dir/calcserver" -config "$dir/server.ini" 2>"$dir/stderr" &
pids+=($!)
target=http://127.0.0.1:$PORT
wait_for "$target/healthcheck" "$dir/stderr"
# Warm-up: every one of the 10 keys computed once.
"$dir/gameday" run -target "$target" -rate 20 -duration 2s -keys 10 -unique 0 -seed 1 \
	-instances 0 -report-interval 0 >/dev/null

key='SUNhbkhhelVuaWNvcm40LXdzLWVjMj8tMQ%3D%3D' # base64 of ICanHazUnicorn4-ws-ec2?-1
echo "| run | rate offered | sent | dropped | wrong | errors | p99 (ms) | wrk -t1 -c64 req/s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for i in $(seq "$REPEAT"); do
	for rate in $RATES; do
		"$dir/gameday" run -target "$target" -rate "$rate" -duration "$DURATION" -keys 10 -unique 0 \
			-seed 1 -instances 0 -report-interval 0 -json "$dir/run.json" >/dev/null
		wrk_rps=$(wrk -t1 -c64 -d"$DURATION" "$target/calc?input=$key" | awk '/^Requests\/sec/ {print $2}')
		python3 - "$dir/run.json" "$i" "$rate" "$wrk_rps" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {sys.argv[3]} | {s['requests']} | {s['dropped']} | {s['wrong']} | {s['errors']} | {s['latency_ms']['p99']:.1f} | {float(sys.argv[4]):.0f} |")
PY
	done
done
