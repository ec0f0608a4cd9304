#!/usr/bin/env bash
# The /calc hit path as a user meets it, side by side with a bare net/http server that
# writes the same 244-byte body (internal/bareserver): both release builds, calcserver
# logging every request to a file with metrics on, driven over loopback by
# `wrk -t1 -c64 -d4s` keep-alive on one warm key, RUNS rounds interleaved, for each
# cache setup in SETUPS: memory (the memory tier), redis (Redis only, no memory tier),
# memory+redis. A second baseline, the bare server sending the four headers calcserver's
# contract adds to a 200 (bareserver -contract-headers), shows what net/http charges for
# those alone. The script fails if the access log holds fewer /calc lines than wrk
# completed. Usage: make bench-hit, or bash scripts/bench-hit.sh
# (RUNS=3 DURATION=4s SETUPS="memory redis memory+redis" by default; CALCSERVER=PATH
# measures that calcserver binary instead of a build of this tree, e.g. an older commit).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-4s}
SETUPS=${SETUPS:-memory redis memory+redis}
CALC_PORT=${CALC_PORT:-18080}
BARE_PORT=${BARE_PORT:-18081}
REDIS_PORT=${REDIS_PORT:-18082}
HDRS_PORT=${HDRS_PORT:-18083}

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

command -v wrk >/dev/null || bash scripts/deps.sh wrk
work_dir
if [ -n "${CALCSERVER:-}" ]; then
	cp -- "$CALCSERVER" "$dir/calcserver"
else
	build_release cmd/calcserver
fi
build_release internal/bareserver
"$dir/bareserver" -addr "127.0.0.1:$BARE_PORT" 2>"$dir/bareserver.stderr" &
pids+=($!)
"$dir/bareserver" -addr "127.0.0.1:$HDRS_PORT" -contract-headers 2>"$dir/bareserver-headers.stderr" &
pids+=($!)
case " $SETUPS " in
*redis*)
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
		sleep 0.1
	done
	;;
esac

wait_for "http://127.0.0.1:$BARE_PORT/"
wait_for "http://127.0.0.1:$HDRS_PORT/"

# wrk_run URL prints "requests/s p99_ms completed".
wrk_run() {
	wrk -t1 -c64 -d"$DURATION" --latency "$1" | awk '
		/requests in/ {done = $1}
		/^Requests\/sec/ {rps = $2}
		/^ +99%/ {v = $2; if (v ~ /us$/) {sub(/us$/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v *= 1000}; p99 = v}
		END {printf "%s %s %s\n", rps, p99, done}'
}

# start_calcserver NAME starts calcserver with the cache setup NAME (its pid in calc_pid).
start_calcserver() {
	local cache
	case $1 in
	memory) cache="" ;;
	redis) cache=$'MemoryCacheSize = 0\nRedisHost = 127.0.0.1\nRedisPort = '"$REDIS_PORT" ;;
	memory+redis) cache=$'RedisHost = 127.0.0.1\nRedisPort = '"$REDIS_PORT" ;;
	*)
		echo "bench-hit: unknown setup $1 (memory, redis, memory+redis)" >&2
		exit 2
		;;
	esac
	rm -f -- "$dir/calcserver.log"
	printf 'Port = %s\nWorkMode = sleep\nWorkTime = 10ms\nLogLocation = %s\n%s\n' \
		"$CALC_PORT" "$dir/calcserver.log" "$cache" >"$dir/server.ini"
	"$dir/calcserver" -config "$dir/server.ini" 2>"$dir/calcserver.stderr" &
	calc_pid=$!
	pids+=("$calc_pid")
	wait_for "http://127.0.0.1:$CALC_PORT/healthcheck" "$dir/calcserver.stderr"
}

calc_url="http://127.0.0.1:$CALC_PORT/calc?input=testing"
for setup in $SETUPS; do
	start_calcserver "$setup"
	curl -fsS -o /dev/null "$calc_url" # the miss: every request after it is a hit
	sleep 0.3                           # the shared caches' writes leave the request path
	calc_lines_before=$(grep -c 'path="/calc' "$dir/calcserver.log" || true)
	calc_done=0
	echo
	echo "### $setup"
	echo
	echo "| round | bare req/s | bare + contract headers req/s | calcserver req/s | ratio to bare | ratio to bare + headers | bare p99 (ms) | calcserver p99 (ms) | p99 ratio |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	for i in $(seq "$RUNS"); do
		read -r b_rps b_p99 _ < <(wrk_run "http://127.0.0.1:$BARE_PORT/calc?input=testing")
		read -r h_rps _ _ < <(wrk_run "http://127.0.0.1:$HDRS_PORT/calc?input=testing")
		read -r c_rps c_p99 c_done < <(wrk_run "$calc_url")
		calc_done=$((calc_done + c_done))
		awk -v i="$i" -v br="$b_rps" -v hr="$h_rps" -v cr="$c_rps" -v bp="$b_p99" -v cp="$c_p99" \
			'BEGIN {printf "| %d | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", i, br, hr, cr, cr / br, cr / hr, bp, cp, cp / bp}'
	done
	sleep 0.5 # the access log is flushed at least every 100 ms
	calc_lines=$(($(grep -c 'path="/calc' "$dir/calcserver.log") - calc_lines_before))
	echo
	echo "wrk completed $calc_done /calc requests; the log holds $calc_lines /calc access lines for them; $(curl -fsS "http://127.0.0.1:$CALC_PORT/metrics" | grep -E '^calcserver_log_' | tr '\n' ' ')"
	stop_pid "$calc_pid"
	if [ "$calc_lines" -lt "$calc_done" ]; then
		echo "bench-hit: $setup: wrk completed $calc_done /calc requests but the log holds only $calc_lines lines" >&2
		exit 1
	fi
done
